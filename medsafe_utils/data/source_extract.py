"""Rebuild a prompt text from the original repository's Python source, by the recipe in the
manifest (prompts/SOURCES.md): the string a variable or a lambda builds, with each variable that
was concatenated in written as a `{placeholder}` and literal braces doubled, so `str.format` fills
it. The result is checked against the manifest's sha256 like any download."""

from __future__ import annotations

import ast

from medsafe_utils.core.errors import DataError


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _placeholder(node: ast.expr, where: str) -> str:
    if isinstance(node, ast.Name):  # `+ prompt` -> {prompt}
        return "{" + node.id + "}"
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return "{" + str(node.slice.value) + "}"  # `row['question']` -> {question}
    raise DataError(
        where,
        f"cannot turn {ast.dump(node)[:80]} into a placeholder",
        expected="a variable name or row['column']",
    )


def render(node: ast.expr, where: str = "<source>") -> str:
    """The template a string expression builds (constants, +, f-strings, lambdas, lists)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _escape(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return render(node.left, where) + render(node.right, where)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            render(v, where) if isinstance(v, ast.Constant) else _placeholder(v.value, where)
            for v in node.values
        )
    if isinstance(node, ast.Lambda):
        return render(node.body, where)
    if isinstance(node, (ast.List, ast.Tuple)):  # one item per line, as prompts/*.txt store lists
        return "".join(render(item, where) + "\n" for item in node.elts)
    return _placeholder(node, where)


def _scope(tree: ast.AST, function: str | None, where: str) -> ast.AST:
    if function is None:
        return tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return node
    raise DataError(where, f"no function {function!r}", expected="the function named in the recipe")


def extract(source: str, recipe: dict, where: str = "<source>") -> str:
    """Apply one recipe: {"assign": name[, "function": f][, "occurrence": n]} or {"lambda": n}."""
    scope = _scope(ast.parse(source), recipe.get("function"), where)
    occurrence = recipe.get("occurrence", recipe.get("lambda", 1))
    if "lambda" in recipe:
        found = [n for n in ast.walk(scope) if isinstance(n, ast.Lambda)]
    else:
        found = [
            n.value
            for n in ast.walk(scope)
            if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == recipe["assign"] for t in n.targets)
        ]
    # ast.walk is breadth-first: order the matches as they appear in the file.
    found.sort(key=lambda n: (n.lineno, n.col_offset))
    if len(found) < occurrence:
        raise DataError(
            where,
            f"recipe {recipe} matches {len(found)} node(s)",
            expected=f"at least {occurrence}",
        )
    return render(found[occurrence - 1], where)
