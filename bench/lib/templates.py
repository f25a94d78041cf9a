"""Config templates: `{{port:NAME}}` and `{{path:NAME}}` placeholders (the style of
crates/rvoy-testkit) filled in with the ports and directories of one run."""

import re

PLACEHOLDER = re.compile(r"\{\{(port|path):([a-z0-9_]+)\}\}")


def render(text, ports, paths):
    def fill(m):
        kind, name = m.groups()
        table = ports if kind == "port" else paths
        if name not in table:
            raise KeyError(f"template needs {{{{{kind}:{name}}}}}, which this run does not define")
        return str(table[name])

    return PLACEHOLDER.sub(fill, text)


def render_file(src, dst, ports, paths):
    with open(src) as f:
        text = f.read()
    with open(dst, "w") as f:
        f.write(render(text, ports, paths))
    return dst
