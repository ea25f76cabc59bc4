"""The five screen layouts (login form, settings list, toolbar, dialog, search results) and their words."""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image, ImageDraw

from .canvas import Canvas
from .glyphs import ICON_NAMES
from .rows import Row, button_row, buttons_fit, column, draw_rows, plan_rows, sample_fitting, stack_rows

LAYOUTS = ("login_form", "settings_list", "toolbar", "dialog", "search_results")
PLATFORM_BY_LAYOUT = {
    "login_form": "web",
    "settings_list": "mobile",
    "toolbar": "desktop",
    "dialog": "desktop",
    "search_results": "web",
}

# The words each layout draws from sit next to it; the package re-exports them as the screens' vocabulary.
LOGIN_TITLES = ("Sign in", "Log in", "Welcome back", "Member login", "Create account", "Account access")
LOGIN_FIELDS = (
    ("Email", "you@example.com"), ("Username", "Enter username"),
    ("Email address", "name@mail.com"), ("Phone number", "+1 555 0100"),
)
PASSWORD_FIELDS = (("Password", "Enter password"), ("Password", "••••••••"), ("PIN", "4-digit PIN"))
REMEMBER = ("Remember me", "Keep me signed in", "Stay logged in", "Trust this device")
FORGOT = ("Forgot password?", "Reset password", "Need help?", "Trouble signing in?")
PRIMARY_LOGIN = ("Sign in", "Log in", "Continue", "Submit", "Next")
SECONDARY_LOGIN = ("Cancel", "Sign up", "Register", "Back")
BOTTOM_LINKS = ("Create an account", "Privacy policy", "Terms of use", "Contact us")


def _login_form(c: Canvas) -> None:
    rng, t, fs = c.rng, c.theme, c.fs
    x, width = column(c, 17, 24)
    field_h = round(fs * 2.2)
    label_above = rng.random() < 0.4
    card = rng.random() < 0.5
    rows: list[Row] = []

    title = rng.choice(LOGIN_TITLES)
    title_h = round(fs * 1.9)
    rows.append(Row(title_h, lambda y: c.text(x, y + title_h // 2, title, scale=1.4)))

    (name1, hint1), (name2, hint2) = rng.choice(LOGIN_FIELDS), rng.choice(PASSWORD_FIELDS)
    for name, hint in ((name1, hint1), (name2, hint2)):
        if label_above:
            cap_h = c.line_h

            def draw_field(y: int, name=name, hint=hint, cap_h=cap_h) -> None:
                c.text(x, y + cap_h // 2, name)
                c.text_field(x, y + cap_h, width, name, hint if rng.random() < 0.5 else None)

            rows.append(Row(cap_h + field_h, draw_field))
        else:
            rows.append(Row(field_h, lambda y, name=name: c.text_field(x, y, width, name, name)))

    remember, forgot = rng.choice(REMEMBER), rng.choice(FORGOT)
    want_check, want_forgot = rng.random() < 0.75, rng.random() < 0.7
    one_line = c.checkbox_w(remember) + c.text_w(forgot) + fs <= width
    row_h = round(fs * 1.6)
    checked = rng.random() < 0.3
    if want_check and want_forgot and one_line and rng.random() < 0.6:

        def draw_both(y: int) -> None:
            c.checkbox(x, y + row_h // 2, remember, checked)
            c.link(x + width - c.text_w(forgot), y + row_h // 2, forgot)

        rows.append(Row(row_h, draw_both, optional=True))
    else:
        if want_check:
            rows.append(Row(row_h, lambda y: c.checkbox(x, y + row_h // 2, remember, checked), optional=True))
        if want_forgot:
            rows.append(Row(row_h, lambda y: c.link(x, y + row_h // 2, forgot), optional=True))

    labels = [rng.choice(PRIMARY_LOGIN)]
    if rng.random() < 0.5:
        labels.append(rng.choice(SECONDARY_LOGIN))
    if not buttons_fit(c, labels, width):
        labels = labels[:1]
    align = rng.choice(("fill", "left", "right")) if len(labels) > 1 else rng.choice(("fill", "left"))
    rows.append(Row(c.button_h, lambda y: button_row(c, x, y, width, labels, align)))

    if rng.random() < 0.5:
        footer = rng.choice([s for s in BOTTOM_LINKS if s not in labels])
        rows.append(Row(c.line_h, lambda y: c.link(x, y + c.line_h // 2, footer), optional=True))

    if card:
        pad = round(fs * 0.9)
        rows, gap, height = plan_rows(c, rows, c.h - 2 * c.margin - 2 * pad)
        top = (c.h - height) // 2 - pad if rng.random() < 0.7 else c.margin
        c.rrect((x - pad, top, x + width + pad, top + height + 2 * pad), t.surface, t.border, radius=min(c.radius, 10))
        draw_rows(rows, gap, top + pad)
    else:
        stack_rows(c, rows, c.margin, c.h - c.margin, centre=rng.random() < 0.5)


SETTINGS_TITLES = ("Settings", "Preferences", "Notifications", "Privacy", "Account", "Display")
SETTINGS_OPTIONS = (
    "Wi-Fi", "Bluetooth", "Dark mode", "Notifications", "Location", "Auto-update", "Sync contacts",
    "Airplane mode", "Sound", "Vibration", "Show previews", "Battery saver", "Auto-rotate", "Backup photos",
)
SETTINGS_LINKS = ("Advanced settings", "Learn more", "Reset to defaults", "About this app", "Privacy policy")
SETTINGS_BUTTONS = (("Save", "Cancel"), ("Apply", "Reset"), ("Done",), ("Save changes",), ("OK", "Cancel"))


def _header_bar(c: Canvas, title: str | None, left: list[str], right: list[str], filled: bool) -> int:
    """A bar across the top with icons at both ends; returns its height."""
    t = c.theme
    h = round(c.fs * 2.6)
    bar = t.accent if filled else t.surface
    fg = t.on_accent if filled else t.fg
    c.draw.rectangle((0, 0, c.w - 1, h - 1), fill=bar)
    if not filled:
        c.draw.line((0, h - 1, c.w - 1, h - 1), fill=t.border)
    size = round(c.fs * 1.8)
    step = size + round(c.fs * 0.5)
    y = (h - size) // 2
    x = c.margin
    for name in left:
        c.icon(x, y, size, name, fg, bar)
        x += step
    text_x = x + (round(c.fs * 0.3) if left else 0)
    x_right = c.w - c.margin - size
    for name in right:
        c.icon(x_right, y, size, name, fg, bar)
        x_right -= step
    if title:
        room = x_right + size - text_x - round(c.fs * 0.5)
        c.text(text_x, h // 2, c.fit_text(title, room, 1.2), fill=fg, scale=1.2)
    return h


def _settings_list(c: Canvas) -> None:
    rng, t, fs = c.rng, c.theme, c.fs
    icons = rng.sample(("back", "menu", "home", "close", "search", "user"), 2)
    left = [icons[0]] if rng.random() < 0.8 else []
    right = [icons[1]] if rng.random() < 0.6 else []
    header_h = _header_bar(c, rng.choice(SETTINGS_TITLES), left, right, filled=rng.random() < 0.5)

    x = c.margin
    width = c.w - 2 * c.margin
    row_h = round(fs * 2.0)
    options = sample_fitting(rng, SETTINGS_OPTIONS, rng.randint(3, 6), lambda s: c.checkbox_w(s) <= width)
    rows: list[Row] = []
    if rng.random() < 0.4:
        section = rng.choice(("General", "Connections", "Alerts", "Privacy"))
        heading = section.upper()
        rows.append(
            Row(c.line_h, lambda y: c.text(x, y + c.line_h // 2, heading, fill=t.muted, scale=0.9), optional=True)
        )
    separators = rng.random() < 0.6
    for i, option in enumerate(options):
        checked = rng.random() < 0.5

        def draw_option(y: int, option=option, checked=checked) -> None:
            c.checkbox(x, y + row_h // 2, option, checked)
            if separators:
                c.draw.line((x, y + row_h + 1, c.w - c.margin, y + row_h + 1), fill=t.border)

        # Two options are required so "the second checkbox" stays meaningful.
        rows.append(Row(row_h, draw_option, optional=i >= 2))
    if rng.random() < 0.5:
        link = rng.choice(SETTINGS_LINKS)
        rows.append(Row(c.line_h, lambda y: c.link(x, y + c.line_h // 2, link), optional=True))
    labels = list(rng.choice(SETTINGS_BUTTONS))
    if not buttons_fit(c, labels, width):
        labels = labels[:1]
    align = rng.choice(("right", "fill", "left"))
    # Required, so stack_rows drops options/link rows to fit but never the buttons.
    rows.append(Row(c.button_h, lambda y: button_row(c, x, y, width, labels, align)))
    stack_rows(c, rows, header_h + round(fs * 0.6), c.h - c.margin)


APP_TITLES = ("Documents", "Photos", "Mail", "Projects", "Notes", "Files", "Music")
DOC_TITLES = ("Quarterly report", "Trip photos", "Meeting notes", "Budget 2025", "Inbox", "Shopping list")
TOOLBAR_BUTTONS = ("Share", "Edit", "Export", "New file", "Upload", "Print", "Rename")
TOOLBAR_LINKS = ("View history", "Open in new tab", "Show details", "Version info")


def _toolbar(c: Canvas) -> None:
    rng, t, fs = c.rng, c.theme, c.fs
    filled = rng.random() < 0.5
    bar_bg = t.accent if filled else t.surface
    fg = t.on_accent if filled else t.fg
    h = round(fs * 2.6)
    size = round(fs * 1.8)
    step = size + round(fs * rng.uniform(0.4, 0.9))
    plates = rng.random() < 0.3 and not filled

    title = rng.choice(APP_TITLES) if rng.random() < 0.6 else None
    title_w = c.text_w(title, 1.2) + fs if title else 0
    room = c.w - 2 * c.margin - title_w
    n = min(rng.randint(3, 6), (room + step - size) // step)
    if n < 3:
        title, title_w, n = None, 0, min(6, (c.w - 2 * c.margin + step - size) // step)
    names = rng.sample(ICON_NAMES, n)

    c.draw.rectangle((0, 0, c.w - 1, h - 1), fill=bar_bg)
    if not filled:
        c.draw.line((0, h - 1, c.w - 1, h - 1), fill=t.border)
    if title:
        c.text(c.margin, h // 2, title, fill=fg, scale=1.2)
        x = c.w - c.margin - n * step + (step - size)  # icons right-aligned after the title
    else:
        x = c.margin
    for name in names:
        c.icon(x, (h - size) // 2, size, name, fg, bar_bg, plate=t.bg if plates else None)
        x += step

    # Body: a document with greyed-out text lines, action buttons and a link.
    left, width = c.margin, c.w - 2 * c.margin
    doc = rng.choice(DOC_TITLES)
    rows = [Row(round(fs * 1.8), lambda y: c.text(left, y + round(fs * 0.9), doc, scale=1.25))]
    for _ in range(rng.randint(2, 4)):
        frac = rng.uniform(0.55, 1.0)
        rows.append(
            Row(
                round(fs * 0.7),
                lambda y, frac=frac: c.draw.rounded_rectangle(
                    (left, y, left + round(width * frac), y + round(fs * 0.55)),
                    radius=2,
                    fill=t.border if t.name == "light" else t.surface,
                ),
                optional=True,
            )
        )
    labels = rng.sample(TOOLBAR_BUTTONS, rng.choice((1, 2, 2)))
    if not buttons_fit(c, labels, width):
        labels = labels[:1]
    rows.append(Row(c.button_h, lambda y: button_row(c, left, y, width, labels, "left")))
    if rng.random() < 0.6:
        link = rng.choice(TOOLBAR_LINKS)
        rows.append(Row(c.line_h, lambda y: c.link(left, y + c.line_h // 2, link), optional=True))
    stack_rows(c, rows, h + round(fs * 0.8), c.h - c.margin)


# (title, message, buttons with the primary action first)
DIALOGS = (
    ("Delete file?", "This file will be moved to the trash.", ("Delete", "Cancel")),
    ("Save changes?", "Your changes will be lost if you don't save them.", ("Save", "Don't save", "Cancel")),
    ("Allow notifications?", "Get an alert when someone messages you.", ("Allow", "Block")),
    ("Sign out?", "You will need to sign in again to continue.", ("Sign out", "Stay")),
    ("Update available", "Restart the app to finish installing the update.", ("Restart", "Later")),
    ("Discard draft?", "This message has not been sent yet.", ("Discard", "Keep editing")),
    ("Share document", "Anyone with the link will be able to view it.", ("Copy link", "Done")),
    ("Enable location?", "Location is used to show places near you.", ("Enable", "Not now")),
)
DONT_ASK = ("Don't ask again", "Remember my choice", "Apply to all files")


def _dialog(c: Canvas) -> None:
    rng, t, fs = c.rng, c.theme, c.fs
    # Faint app content behind the dialog (not recorded: it is under a scrim).
    c.draw.rectangle((0, 0, c.w - 1, round(fs * 2.4)), fill=t.surface)
    y = round(fs * 3.4)
    while y < c.h - fs:
        bar_w = round((c.w - 2 * c.margin) * rng.uniform(0.4, 1.0))
        c.draw.rounded_rectangle((c.margin, y, c.margin + bar_w, y + round(fs * 0.6)), radius=2, fill=t.border)
        y += round(fs * 1.5)
    scrim = Image.new("RGB", c.img.size, (0, 0, 0))
    c.img.paste(Image.blend(c.img, scrim, rng.uniform(0.35, 0.55)))
    c.draw = ImageDraw.Draw(c.img)

    title, message, buttons = rng.choice(DIALOGS)
    pad = round(fs * rng.uniform(0.8, 1.2))
    card_w = min(c.w - 2 * c.margin, round(fs * rng.uniform(18, 26)))
    inner = card_w - 2 * pad
    cx0 = (c.w - card_w) // 2
    x = cx0 + pad

    labels = list(buttons)
    if len(labels) == 3 and rng.random() < 0.5:
        labels = labels[:2]
    stacked = not buttons_fit(c, labels, inner)
    lines = c.wrap(message, inner)[:3]
    close = rng.random() < 0.7
    extra_check = rng.choice(DONT_ASK) if rng.random() < 0.4 else None
    extra_link = "Learn more" if rng.random() < 0.3 else None
    if not close and not extra_check and not extra_link and len(labels) < 3:
        close = True  # keep >= 3 targets per screen

    title_h = round(fs * 2.0)
    rows: list[Row] = []
    icon_size = round(fs * 1.6)

    def draw_title(y: int) -> None:
        room = inner - (icon_size + fs // 2 if close else 0)
        c.text(x, y + title_h // 2, c.fit_text(title, room, 1.25), scale=1.25)
        if close:
            icon_x, icon_y = cx0 + card_w - pad - icon_size, y + (title_h - icon_size) // 2
            c.icon(icon_x, icon_y, icon_size, "close", t.muted, t.surface)

    rows.append(Row(title_h, draw_title))

    def draw_message(y: int) -> None:
        for k, line in enumerate(lines):  # one row, so the lines stay tight
            c.text(x, y + k * c.line_h + c.line_h // 2, line, fill=t.muted)

    rows.append(Row(c.line_h * len(lines), draw_message))
    if extra_check:
        rows.append(Row(round(fs * 1.6), lambda y: c.checkbox(x, y + round(fs * 0.8), extra_check, False)))
    if extra_link:
        rows.append(Row(c.line_h, lambda y: c.link(x, y + c.line_h // 2, extra_link)))
    if stacked:
        for i, label in enumerate(labels):  # one full-width button per line, primary first
            style = None if i == 0 else c.secondary_style
            rows.append(Row(c.button_h, lambda y, label=label, style=style: c.button(x, y, label, inner, style)))
    else:
        rows.append(Row(c.button_h, lambda y: button_row(c, x, y, inner, labels, "right")))

    rows, gap, content_h = plan_rows(c, rows, c.h - 2 * c.margin - 2 * pad)
    card_h = content_h + 2 * pad
    top = (c.h - card_h) // 2
    edge = t.border if t.name == "light" else None
    c.rrect((cx0, top, cx0 + card_w, top + card_h), t.surface, edge, radius=min(c.radius, 12))
    draw_rows(rows, gap, top + pad)


SEARCH_PLACEHOLDERS = ("Search", "Search products", "Search docs", "Search the web", "Find a file")
RESULT_TITLES = (
    "Getting started guide", "Pricing and plans", "Install on Windows", "Release notes", "API reference",
    "Contact support", "Keyboard shortcuts", "Troubleshooting tips", "Reset your password", "Shipping and returns",
    "Best hiking boots", "Weather in Paris", "Python tutorial", "Cheap flights to Rome", "Easy pasta recipes",
    "Used bikes for sale", "Learn to play guitar", "Train times", "Museum opening hours",
)
SNIPPETS = (
    "A step-by-step introduction for new users.",
    "Compare features and choose the right plan.",
    "Updated last week with new examples.",
    "Answers to the most common questions.",
    "Read reviews and compare prices today.",
    "Everything you need to know in five minutes.",
)
SEARCH_FILTERS = ("Exact match", "Only in stock", "Include archived", "Safe search")


def _search_results(c: Canvas) -> None:
    rng, t, fs = c.rng, c.theme, c.fs
    x, width = c.margin, c.w - 2 * c.margin
    placeholder = rng.choice(SEARCH_PLACEHOLDERS)
    field_h = round(fs * 2.2)
    use_icon = rng.random() < 0.5
    go = rng.choice(("Search", "Go", "Find"))
    side_w = field_h if use_icon else c.button_w(go)
    gap = round(fs * 0.5)

    def draw_search(y: int) -> None:
        c.text_field(x, y, width - side_w - gap, placeholder, placeholder)
        if use_icon:
            c.icon(x + width - side_w, y, field_h, "search", t.on_accent, t.bg, plate=t.accent)
        else:
            c.button(x + width - side_w, y + (field_h - c.button_h) // 2, go, style="filled")

    rows = [Row(max(field_h, c.button_h), draw_search)]
    if rng.random() < 0.4:
        filt = rng.choice(SEARCH_FILTERS)
        ticked = rng.random() < 0.5
        rows.append(Row(round(fs * 1.6), lambda y: c.checkbox(x, y + round(fs * 0.8), filt, ticked), optional=True))
    titles = sample_fitting(rng, RESULT_TITLES, rng.randint(2, 4), lambda s: c.text_w(s) <= width)
    result_h = c.line_h + round(fs * 1.2)
    for i, title in enumerate(titles):
        snippet = c.fit_text(rng.choice(SNIPPETS), width, 0.9)

        def draw_result(y: int, title=title, snippet=snippet) -> None:
            c.link(x, y + c.line_h // 2, title)
            c.text(x, y + c.line_h + round(fs * 0.55), snippet, fill=t.muted, scale=0.9)

        rows.append(Row(result_h, draw_result, optional=i >= 2))
    if rng.random() < 0.6:
        labels = ["Next"] if rng.random() < 0.5 else ["Previous", "Next"]
        if not buttons_fit(c, labels, width):
            labels = ["Next"]
        rows.append(Row(c.button_h, lambda y: button_row(c, x, y, width, labels, rng.choice(("left", "right")))))
    else:
        more = rng.choice(("More results", "Next page", "Show all"))
        rows.append(Row(c.line_h, lambda y: c.link(x, y + c.line_h // 2, more)))
    stack_rows(c, rows, c.margin, c.h - c.margin)


LAYOUT_FUNCS: dict[str, Callable[[Canvas], None]] = {
    "login_form": _login_form,
    "settings_list": _settings_list,
    "toolbar": _toolbar,
    "dialog": _dialog,
    "search_results": _search_results,
}

