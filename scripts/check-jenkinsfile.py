#!/usr/bin/env python3
"""Offline check of a declarative Jenkinsfile: exit 0 when it is valid
Groovy 3 (groovy-parser's grammar) and its `pipeline { … }` block has the
declarative structure Jenkins' pipeline-model-definition plugin requires
(sections, stages with exactly one of steps/stages/parallel/matrix, known
`post` conditions and `when` conditions); exit 1 with the reason otherwise.

Not checked without a Jenkins server: that the steps used (sh, junit,
archiveArtifacts…) and their parameters exist on it (plugins), agent labels,
and what the plugin validates at run time (see docs/hosted-ci.md).

Usage: check-jenkinsfile.py FILE…
"""
import sys

from groovy_parser.parser import parse_groovy_content
from lark import Token, Tree

PIPELINE_SECTIONS = {"agent", "stages", "post", "options", "environment",
                     "parameters", "triggers", "tools", "libraries"}
STAGE_SECTIONS = {"agent", "steps", "when", "post", "options", "environment",
                  "stages", "parallel", "matrix", "input", "tools", "failFast"}
STAGE_BODIES = {"steps", "stages", "parallel", "matrix"}
POST_CONDITIONS = {"always", "changed", "fixed", "regression", "aborted",
                   "failure", "success", "unstable", "unsuccessful", "cleanup",
                   "notBuilt"}
WHEN_CONDITIONS = {"branch", "changeRequest", "anyOf", "allOf", "not",
                   "environment", "expression", "tag", "buildingTag",
                   "changelog", "changeset", "equals", "triggeredBy",
                   "beforeAgent", "beforeInput", "beforeOptions"}


class Invalid(Exception):
    pass


def first(tree, name):
    """The first subtree called `name`, depth first, or None."""
    for sub in tree.iter_subtrees_topdown():
        if sub.data == name:
            return sub
    return None


def first_identifier(tree):
    for sub in tree.iter_subtrees_topdown():
        if sub.data == "identifier":
            for child in sub.children:
                if isinstance(child, Token):
                    # groovy-parser's token values are pygments triples
                    # (token type, text, text).
                    value = child.value
                    if isinstance(value, tuple) and len(value) >= 2:
                        return str(value[1])
                    return str(value)
    return None


def statements(block):
    """The statements directly in a closure's block: (name, closure or None)."""
    stmts = first(block, "block_statements")
    out = []
    if stmts is None:
        return out
    for stmt in stmts.children:
        if not isinstance(stmt, Tree) or stmt.data != "block_statement":
            continue
        out.append((first_identifier(stmt), first(stmt, "closure")))
    return out


def check_when(closure, where):
    for name, sub in statements(closure):
        if name not in WHEN_CONDITIONS:
            raise Invalid(f"{where}: unknown when condition {name!r}")
        if name in {"anyOf", "allOf", "not"} and sub is not None:
            check_when(sub, f"{where} > {name}")


def check_stage(name, closure):
    if closure is None:
        raise Invalid(f"stage {name}: no block")
    sections = [n for n, _ in statements(closure)]
    for section in sections:
        if section not in STAGE_SECTIONS:
            raise Invalid(f"stage {name}: unknown section {section!r}")
    bodies = [s for s in sections if s in STAGE_BODIES]
    if len(bodies) != 1:
        raise Invalid(f"stage {name}: needs exactly one of steps, stages, parallel, matrix (has {bodies})")
    for section, sub in statements(closure):
        if section == "when":
            check_when(sub, f"stage {name} > when")
        if section == "post":
            check_post(sub, f"stage {name} > post")


def check_post(closure, where):
    for name, _ in statements(closure):
        if name not in POST_CONDITIONS:
            raise Invalid(f"{where}: unknown condition {name!r}")


def check(text):
    tree = parse_groovy_content(text)
    top = [s for s in tree.iter_subtrees_topdown() if s.data == "script_statement"]
    names = [first_identifier(s) for s in top]
    if names.count("pipeline") != 1:
        raise Invalid(f"expected one top-level `pipeline {{ … }}` block, found statements {names}")
    pipeline = first(top[names.index("pipeline")], "closure")
    if pipeline is None:
        raise Invalid("`pipeline` has no block")
    sections = statements(pipeline)
    section_names = [n for n, _ in sections]
    for name in section_names:
        if name not in PIPELINE_SECTIONS:
            raise Invalid(f"pipeline: unknown section {name!r}")
    for required in ("agent", "stages"):
        if required not in section_names:
            raise Invalid(f"pipeline: missing section {required!r}")
    for name, sub in sections:
        if name == "stages":
            stages = statements(sub) if sub is not None else []
            if not stages:
                raise Invalid("stages: no stage")
            for stage_name, stage in stages:
                if stage_name != "stage":
                    raise Invalid(f"stages: {stage_name!r} is not a stage")
                check_stage(stage_name, stage)
        if name == "post":
            check_post(sub, "post")


def main(paths):
    status = 0
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                check(f.read())
            print(f"{path}: ok")
        except Invalid as e:
            print(f"{path}: invalid declarative pipeline: {e}", file=sys.stderr)
            status = 1
        except Exception as e:  # the parser's syntax errors
            # The parser lists every expected token: the first lines say where.
            reason = "\n".join(str(e).splitlines()[:3])
            print(f"{path}: not valid Groovy: {type(e).__name__}: {reason}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
