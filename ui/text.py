"""Plain text in the dock's rich-text labels."""


def html(text):
    """``text`` escaped for a QLabel showing rich text; line breaks kept.

    >>> html("a < b\\nc")
    'a &lt; b<br>c'
    """
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\n", "<br>"))
