"""Render the report blocks (kd_edge.report.document) as GitHub-flavoured markdown; images link the PNGs beside it."""


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(blocks) -> str:
    lines = []
    for block in blocks:
        if block.kind == "h":
            lines += ["#" * block.level + " " + block.text, ""]
        elif block.kind == "p":
            lines += [block.text, ""]
        elif block.kind == "ul":
            lines += [f"- {item}" for item in block.items] + [""]
        elif block.kind == "table":
            lines.append("| " + " | ".join(_cell(h) for h in block.header) + " |")
            lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(block.header))) + "|")
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
        elif block.kind == "img":
            lines += [f"![{block.text}]({block.src})", ""]
        else:
            raise ValueError(f"unknown block kind {block.kind!r}")
    return "\n".join(lines).rstrip() + "\n"
