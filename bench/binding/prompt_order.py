"""TEXTFIRST=1 puts the instruction before the screenshot in every chat prompt (the package puts the image
first, as Qwen2-VL's own examples do): image tokens can then attend to the instruction's words."""
import os


def apply_from_env() -> bool:
    if not os.environ.get("TEXTFIRST"):
        return False
    from uivlm_helpers import families

    def prompt_text(self, processor, user_text, system_prompt=None, image_count=1):
        messages = []
        if system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
        messages.append({"role": "user", "content": [{"type": "text", "text": user_text}, *[{"type": "image"}] * image_count]})
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    families.ChatTemplateAdapter.prompt_text = prompt_text
    return True
