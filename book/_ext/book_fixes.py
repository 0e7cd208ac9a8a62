"""Small Sphinx fixes for the book (loaded through `sphinx.local_extensions` in _config.yml).

sphinx-thebe 0.3.1 registers its inline configuration script once per reading pass, and
Jupyter Book's build gets two of them into every page: the second `const THEBE_JS_URL`
then stops with "Identifier has already been declared" in the browser console. Identical
scripts are dropped here, keeping the first of each.
"""


def _unique_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen = set()
    unique = []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        key = (
            getattr(script, "filename", None) or "",
            tuple(sorted((k, str(v)) for k, v in attributes.items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # in place: handlers that run later add to this same list


def setup(app):
    """Register the fix with Sphinx."""
    # Early: the event stops at the first handler that returns a template name.
    app.connect("html-page-context", _unique_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
