"""Environment report for 01_setup: library versions, the compute device and its memory."""

from __future__ import annotations

import platform
from importlib import metadata

import torch

PACKAGES = ("torch", "torchvision", "transformers", "peft", "accelerate", "datasets", "bitsandbytes",
            "papermill", "ipywidgets")


def environment_report() -> dict:
    """Versions of the libraries the workbook uses, and what compute is available."""

    report = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            report[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            report[name] = "not installed"
    report["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report["gpu"] = props.name
        report["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        report["bf16_supported"] = torch.cuda.is_bf16_supported()
    else:
        report["gpu"] = None
        report["cpu_threads"] = torch.get_num_threads()
    return report
