"""Comparing: the answers of two (or three) targets, field by field.

Pure and synchronous: the pipeline hands in what each target returned and gets back field
paths mapped to `Difference`s. Bodies are parsed by `lift` (Content-Encoding undone,
capped at `max_body_bytes`) and compared with DeepDiff.

Path rules (Diffy-like): `status`, `headers.<lower-name>`, `body.<key>.<key>` with array
indexes dropped so every element of an array shares one path, `body` for a whole
text/HTML body, `body.length` / `body.sha256` for binary bodies, `error` when a target
failed on one side only.

Arrays: when an array has a different length on the two sides, it is reported once as
`size_changed` (left/right = the lengths) and nothing inside it is reported: with
elements shifted, per-index comparisons would be dozens of misleading entries. Arrays of
equal length are compared element by element.

Record streams and multi-line text (`lift.Records`, `lift.Lines`) are aligned first
(difflib's SequenceMatcher, so one inserted record is one `extra`, not every later record
changed) and keep their index: `body[3].field`, `body[12]`.

Subtrees: a removed or added object is one `missing`/`extra` at its root with `leaves`
(how many scalar values it held). When the same keys reappear elsewhere (a wrapper object
dropped or added: `body.headers.X` -> `body.X`), that is one `moved` at the old root with
`to` (the new root) and `leaves`; values that changed on the way are reported at their new
path as `changed`.

Validators (ETag, Last-Modified) are compared and noise-cancelled like any header, but a
difference in them alone on an equal body is dropped: it is where the file lives (inode,
mtime), not what it says.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import marshal
import math
import operator
import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from deepdiff import DeepDiff
from deepdiff.helper import NotPresent

from .headers import DEFAULT_IGNORED_HEADERS
from .lift import DEFAULT_MAX_BODY_BYTES, LiftSettings, Lines, Records, body_of
from .model import Clipped, Difference, Response

# Beyond this many differing values in one body (after equal subtrees are pruned), DeepDiff
# would take seconds (10,000 random keys: ~1 s): the bodies are then compared by hash of
# their canonical JSON, reported once at `body.sha256`, and counted as bounded ("width").
MAX_COMPARE_NODES = 5_000
MAX_VALUE_CHARS = 1000  # longer strings in a Difference are cut here
_MAX_ITEMS = 100  # longer arrays / bigger objects in a Difference are cut here
_MAX_DEPTH = 12
_TEXT_PREVIEW = 1000
_MAX_SEQUENCE_DIFFS = 100  # records / lines reported per body; the rest are not listed
_VALIDATORS = ("headers.etag", "headers.last-modified")
_MAX_MOVE_WORK = 100_000  # removed subtrees x differences looked at for moves
HEADER_VALUE_MODES = ("joined", "sorted")

_DEEPDIFF_TYPES: dict[str, str] = {
    "type_changes": "type_changed",
    "values_changed": "changed",
    "dictionary_item_removed": "missing",
    "iterable_item_removed": "missing",
    "attribute_removed": "missing",
    "set_item_removed": "missing",
    "dictionary_item_added": "extra",
    "iterable_item_added": "extra",
    "attribute_added": "extra",
    "set_item_added": "extra",
}


@dataclass(frozen=True)
class CompareSettings:
    ignore_headers: tuple[str, ...] = ()  # extra names or globs ("x-foo-*"), case-insensitive
    ignore_fields: tuple[str, ...] = ()  # globs on field paths ("body.headers.Host")
    exclude_headers: bool = False  # Diffy's -excludeHttpHeadersComparison
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # decoded limit: decompression-bomb guard
    # repeated headers: "joined" in order with ", " (RFC 9110 5.3: order can matter), or
    # "sorted" values as one list (Diffy's HttpLifter: order never matters)
    header_values: str = "joined"
    lift: LiftSettings = field(default_factory=LiftSettings)

    def __post_init__(self) -> None:
        if self.max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must not be negative, got {self.max_body_bytes}")
        if self.header_values not in HEADER_VALUE_MODES:
            raise ValueError(f"header_values must be one of {HEADER_VALUE_MODES}")


@dataclass(frozen=True)
class Comparison:
    raw: dict[str, Difference]  # primary vs candidate (secondary vs candidate: see below)
    noise: dict[str, Difference]  # primary vs secondary
    identical: bool  # fast path: bytes identical, deepdiff skipped
    failed: tuple[str, ...] = ()  # targets that failed on their own (see `failed`)
    baseline_failed: bool = False  # primary or secondary failed, the candidate did not
    # "depth"/"width" per body compared by hash for its shape (lift.MAX_COMPARE_DEPTH/NODES)
    bounded: tuple[str, ...] = ()


def failed(r: Response) -> bool:
    """A target's own failure: no HTTP answer at all, or a 5xx."""
    return r.error is not None or (r.status is not None and r.status >= 500)


# Bounding values ---------------------------------------------------------------------


def truncate_value(value: Any, max_chars: int = MAX_VALUE_CHARS, _depth: int = 0) -> Any:
    """A JSON-serialisable copy of `value` with long strings, big containers and deep
    nesting cut, keeping the structure so redaction by key still works afterwards."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        # cut after redaction, which sees the whole value (`Clipped`)
        return value if len(value) <= max_chars else Clipped(value, max_chars)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return truncate_value(bytes(value).decode("utf-8", "replace"), max_chars, _depth)
    if isinstance(value, NotPresent):
        return None
    if _depth >= _MAX_DEPTH:
        return "... [nested too deep]"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= _MAX_ITEMS:
                out["..."] = f"[{len(value)} keys]"
                break
            out[truncate_value(str(k), max_chars)] = truncate_value(v, max_chars, _depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        items = [truncate_value(v, max_chars, _depth + 1) for v in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            items.append(f"... [{len(value)} items]")
        return items
    return truncate_value(str(value), max_chars, _depth)


# Pruning -------------------------------------------------------------------------------


def _typed(value: Any) -> bytes | str:
    """A serialisation that tells 1, 1.0 and true apart and keeps dict order: equal output
    means strictly equal values. marshal (format 2: no back-references, so equal values
    give equal bytes) is ~5x faster than repr, which this replaced and which stays for
    values marshal refuses (list and dict subclasses). Unequal output between equal values
    (an interned string on one side) only costs the slower pairwise check."""
    try:
        return marshal.dumps(value, 2)
    except ValueError:
        return repr(value)


def _strict_equal(a: Any, b: Any) -> bool:
    """Equal with JSON types respected: Python has 1 == 1.0 == True, JSON does not."""
    if type(a) is not type(b) or a != b:
        return False
    # `a == b` already holds, so the typed serialisation (C speed) only has to catch nested
    # 1/1.0/true and dict key order (which only costs a descent that then finds nothing)
    return type(a) not in (dict, list) or _typed(a) == _typed(b)


def _all_strict_equal(lefts: list, rights: list) -> list[bool]:
    """Per pair: strictly equal? One C-speed pass for the common all-equal case."""
    verdicts = list(map(operator.eq, lefts, rights))
    same_l = [v for v, ok in zip(lefts, verdicts) if ok]
    same_r = [v for v, ok in zip(rights, verdicts) if ok]
    # both serialisations are sequences of complete values, pairwise equal, so equal
    # joined output means every pair is strictly equal
    if same_l and _typed(same_l) != _typed(same_r):
        verdicts = [ok and _strict_equal(a, b) for a, b, ok in zip(lefts, rights, verdicts)]
    return verdicts


_CONTAINERS = (dict, list)
_SHAPE_DEPTH = 8


def _shape(value: Any, depth: int = 0) -> Any:
    """What decides the paths and report types DeepDiff will find in a pruned subtree."""
    if type(value) is dict:
        if depth >= _SHAPE_DEPTH:
            return "dict"
        return ("dict", tuple((k, _shape(v, depth + 1)) for k, v in sorted(value.items())))
    if type(value) is list:
        if depth >= _SHAPE_DEPTH:
            return "list"
        return ("list", frozenset(_shape(v, depth + 1) for v in value))
    return type(value).__name__


def _prune(left: Any, right: Any, keys: list, found: list[tuple[list, Difference]]) -> tuple[Any, Any]:
    """Copies of two differing trees with equal subtrees dropped, for DeepDiff to classify.

    Arrays of equal length keep only their differing element pairs (indexes are dropped
    from paths, so alignment among the rest is all that matters). Arrays whose length
    differs become one size_changed in `found` and are not descended into. Scalar pairs
    inside arrays are classified here: DeepDiff compares array items by hash, and
    hash(1) == hash(1.0) == hash(True)."""
    if type(left) is dict and type(right) is dict:
        pl: dict = {}
        pr: dict = {}
        common = [k for k in left if k in right]
        verdicts = _all_strict_equal([left[k] for k in common], [right[k] for k in common])
        for k, same in zip(common, verdicts):
            if not same:
                pl[k], pr[k] = _prune(left[k], right[k], keys + [k], found)
        for k, lv in left.items():
            if k not in right:
                pl[k] = lv
        for k, rv in right.items():
            if k not in left:
                pr[k] = rv
        return pl, pr
    if type(left) is list and type(right) is list:
        if len(left) != len(right):
            found.append((keys, Difference("size_changed", len(left), len(right))))
            return None, None
        ll: list = []
        lr: list = []
        seen: set = set()
        for i, (lv, rv, same) in enumerate(zip(left, right, _all_strict_equal(left, right))):
            if same:
                continue
            if isinstance(lv, _CONTAINERS) and type(lv) is type(rv):
                a, b = _prune(lv, rv, keys + [i], found)
                # all elements share one path, so 1000 items differing the same way
                # (a per-item timestamp) need DeepDiff to look at only the first
                shape = (_shape(a), _shape(b))
                if shape in seen:
                    continue
                seen.add(shape)
                ll.append(a)
                lr.append(b)
            else:
                kind = "changed" if type(lv) is type(rv) else "type_changed"
                found.append((keys + [i], Difference(kind, truncate_value(lv), truncate_value(rv))))
        return ll, lr
    return left, right


def _count(value: Any) -> int:
    """Values in a (pruned, depth-bounded) tree, counted iteratively."""
    n = 0
    stack = [value]
    while stack:
        v = stack.pop()
        n += 1
        if type(v) is dict:
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)
    return n


def _canonical_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# Paths --------------------------------------------------------------------------------


def _body_path(keys: list, prefix: str = "body") -> str:
    names = [str(k) for k in keys if not isinstance(k, int)]
    return prefix + "." + ".".join(names) if names else prefix


def _leaves(value: Any, depth: int = 0) -> int:
    """Scalar values in a subtree (an empty container counts as one)."""
    if depth > 64:
        return 1
    if type(value) is dict:
        return sum(_leaves(v, depth + 1) for v in value.values()) or 1
    if type(value) is list:
        return sum(_leaves(v, depth + 1) for v in value) or 1
    return 1


def _find_moves(out: dict[str, Difference], subtrees: dict[str, Any], others: dict[str, Any],
                kind: str, other: str, prefix: str) -> None:
    """A removed (`kind` missing) or added (extra) object whose keys all reappear as
    `other` entries under one common parent, most with equal values, is one `moved`."""
    for root, value in subtrees.items():
        if type(value) is not dict or not value or root not in out:
            continue
        by_parent: dict[str, dict[str, str]] = {}
        for path, d in out.items():
            if d.type != other or not path.startswith(prefix):
                continue
            parent, _, key = path.rpartition(".")
            if key in value and parent != root:
                by_parent.setdefault(parent, {})[key] = path
        parent = max(by_parent, key=lambda p: len(by_parent[p]), default=None)
        if parent is None or len(by_parent[parent]) != len(value):
            continue
        paths = by_parent[parent]
        moved = {k: others[paths[k]] for k in value}
        old, new = (value, moved) if kind == "missing" else (moved, value)
        same = sum(1 for k in value if _strict_equal(old[k], new[k]))
        if same * 2 < len(value):
            continue  # mostly new values: an unrelated removal and addition
        for k, path in paths.items():
            del out[path]
            if not _strict_equal(old[k], new[k]):
                kind_k = "changed" if type(old[k]) is type(new[k]) else "type_changed"
                out[f"{parent}.{k}" if kind == "missing" else f"{root}.{k}"] = Difference(
                    kind_k, truncate_value(old[k]), truncate_value(new[k]))
        src, dst = (root, parent) if kind == "missing" else (parent, root)
        # keyed at the subtree's own root (the dropped or the added wrapper), never at a
        # parent such as `body` that other differences may share
        out[root] = Difference("moved", f"{src}.*", f"{dst}.*", leaves=_leaves(value), to=dst)


# Classifying what differs -------------------------------------------------------------

_Report = tuple[str, list, Any, Any]  # (kind, keys, left, right), in DeepDiff's report order
_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


class _NotPlain(Exception):
    """A pruned tree holds something other than JSON's types: DeepDiff classifies it."""


def _deepdiff_reports(pl: Any, pr: Any) -> list[_Report]:
    # ignore_private_variables=False: DeepDiff's default skips dict keys starting with `__`,
    # and GraphQL answers carry `__typename`, a field a release may well change.
    tree = DeepDiff(pl, pr, ignore_order=False, view="tree", threshold_to_diff_deeper=0,
                    verbose_level=1, cache_size=0, get_deep_distance=False,
                    ignore_private_variables=False)
    out: list[_Report] = []
    for report, kind in _DEEPDIFF_TYPES.items():
        for level in tree.get(report, ()):
            out.append((kind, level.path(output_format="list"), level.t1, level.t2))
    return out


def _plain_reports(pl: Any, pr: Any) -> list[_Report] | None:
    """What DeepDiff (with the options `_deepdiff_reports` gives it) reports for two pruned
    trees of plain JSON values, found in one walk: DeepDiff costs ~50 us even when the
    pruned trees hold a single changed field (the common case), this ~2 us. None when a
    tree holds any other type (a digest, records): DeepDiff's own rules then apply.

    The same reports in the same order: type changes first (any two values of different
    types, containers included, not descended into), then changed scalars, removed then
    added keys; lists pairwise by index (pruned lists have equal lengths and hold
    containers). Keys starting with `__` are compared like any other."""
    changed: list[_Report] = []
    typed: list[_Report] = []
    removed: list[_Report] = []
    added: list[_Report] = []

    def walk(t1: Any, t2: Any, keys: list) -> None:
        ty = type(t1)
        if ty is not type(t2):
            typed.append(("type_changed", keys, t1, t2))
        elif ty is dict:
            for k in t1:
                if type(k) is not str:
                    raise _NotPlain
            for k in t2:
                if type(k) is not str:
                    raise _NotPlain
                if k not in t1:
                    added.append(("extra", keys + [k], None, t2[k]))
            for k in t1:
                if k not in t2:
                    removed.append(("missing", keys + [k], t1[k], None))
            for k in t2:
                if k in t1:
                    walk(t1[k], t2[k], keys + [k])
        elif ty is list:
            if len(t1) != len(t2):
                raise _NotPlain
            for i, (a, b) in enumerate(zip(t1, t2)):
                if type(a) not in _CONTAINERS and not (a is None and b is None):
                    raise _NotPlain  # DeepDiff aligns lists of scalars by difflib
                walk(a, b, keys + [i])
        elif ty in _PLAIN_SCALARS:
            if t1 != t2:
                changed.append(("changed", keys, t1, t2))
        else:
            raise _NotPlain

    try:
        walk(pl, pr, [])
    except _NotPlain:
        return None
    return typed + changed + removed + added


class _Glob:
    """Many fnmatch globs as one compiled regex."""

    def __init__(self, globs: tuple[str, ...], ignore_case: bool) -> None:
        globs = tuple(g.strip() for g in globs if g and g.strip())
        flags = re.IGNORECASE if ignore_case else 0
        self._re = re.compile("|".join(fnmatch.translate(g) for g in globs), flags) if globs else None

    def __call__(self, s: str) -> bool:
        return self._re is not None and self._re.match(s) is not None


# The comparator -----------------------------------------------------------------------


class Comparator:
    def __init__(self, settings: CompareSettings) -> None:
        self.settings = settings
        self._ignored_header = _Glob(DEFAULT_IGNORED_HEADERS + tuple(settings.ignore_headers), True)
        self._ignored_field = _Glob(tuple(settings.ignore_fields), False)
        self._ignored_header_field = _Glob(
            tuple(g for g in settings.ignore_fields if g.lower().startswith("headers.")), True)
        self._header_verdicts: dict[str, bool] = {}
        self._sorted_headers = settings.header_values == "sorted"

    # compared headers ---------------------------------------------------------------------------

    def _keep_header(self, lower: str) -> bool:
        verdict = self._header_verdicts.get(lower)
        if verdict is None:
            verdict = not self._ignored_header(lower)
            if len(self._header_verdicts) > 4096:  # names come from targets: keep the cache bounded
                self._header_verdicts.clear()
            self._header_verdicts[lower] = verdict
        return verdict

    def _compared_headers(self, r: Response) -> dict[str, Any]:
        if self.settings.exclude_headers:
            return {}
        out: dict[str, Any] = {}
        if self._sorted_headers:
            for name, value in r.headers:
                lower = name.lower()
                if self._keep_header(lower):
                    out.setdefault(lower, []).append(value)
            return {k: v[0] if len(v) == 1 else sorted(v) for k, v in out.items()}
        for name, value in r.headers:
            lower = name.lower()
            if self._keep_header(lower):
                out[lower] = f"{out[lower]}, {value}" if lower in out else value
        return out

    def _parsed_body(self, r: Response) -> Any:
        return body_of(r, self.settings.max_body_bytes, self.settings.lift)

    # comparing -------------------------------------------------------------------------

    def _drop_ignored(self, diffs: dict[str, Difference]) -> dict[str, Difference]:
        if not self.settings.ignore_fields:
            return diffs
        return {p: d for p, d in diffs.items()
                if not (self._ignored_field(p)
                        or (p.startswith("headers.") and self._ignored_header_field(p)))}

    def _diff_headers(self, lh: dict[str, str], rh: dict[str, str], out: dict[str, Difference]) -> None:
        if lh == rh:
            return
        for name in sorted(lh.keys() | rh.keys()):
            lv, rv = lh.get(name), rh.get(name)
            if lv == rv:
                continue
            kind = "missing" if rv is None else "extra" if lv is None else "changed"
            out[f"headers.{name}"] = Difference(kind, truncate_value(lv), truncate_value(rv))

    def _diff_bodies(self, lb: Any, rb: Any, out: dict[str, Difference],
                     bounded: list[str]) -> None:
        if _strict_equal(lb, rb):
            return
        lt, rt = type(lb), type(rb)
        if lt is rt and lt is dict:  # the common case first: two JSON objects
            self._diff_tree(lb, rb, out, "body", bounded)
            return
        if lt is rt and lt in (Records, Lines):
            self._diff_sequence(lb, rb, out, bounded)
            return
        if lt in (Records, Lines) and isinstance(rb, str) or rt in (Records, Lines) and isinstance(lb, str):
            # one side one line, the other several: compare as lines
            self._diff_sequence(Lines([lb]) if isinstance(lb, str) else Lines(lb),
                                Lines([rb]) if isinstance(rb, str) else Lines(rb), out, bounded)
            return
        if not isinstance(lb, (dict, list)) or lt is not rt:
            kind = "changed" if lt is rt else "type_changed"
            out["body"] = Difference(kind, truncate_value(lb, _TEXT_PREVIEW), truncate_value(rb, _TEXT_PREVIEW))
            return
        self._diff_tree(lb, rb, out, "body", bounded)

    def _diff_tree(self, lb: Any, rb: Any, out: dict[str, Difference], prefix: str,
                   bounded: list[str]) -> None:
        """Two differing dicts or lists, by path below `prefix`."""
        # DeepDiff visits every node, equal or not (~25 us each): hand it only what differs
        found: list[tuple[list, Difference]] = []
        pl, pr = _prune(lb, rb, [], found)
        if len(found) + _count(pl) + _count(pr) > MAX_COMPARE_NODES:
            bounded.append("width")
            out[f"{prefix}.sha256"] = Difference("changed", _canonical_hash(lb), _canonical_hash(rb))
            return
        for keys, difference in found:
            out.setdefault(_body_path(keys, prefix), difference)
        removed: dict[str, Any] = {}
        added: dict[str, Any] = {}
        reports = _plain_reports(pl, pr)
        if reports is None:
            reports = _deepdiff_reports(pl, pr)
        for kind, keys, t1, t2 in reports:
            path = _body_path(keys, prefix)
            if path not in out:
                leaves = None
                if kind == "missing":
                    removed[path] = t1
                    leaves = _leaves(t1) if type(t1) in (dict, list) else None
                elif kind == "extra":
                    added[path] = t2
                    leaves = _leaves(t2) if type(t2) in (dict, list) else None
                out[path] = Difference(kind, truncate_value(t1), truncate_value(t2), leaves=leaves)
        # each candidate subtree scans the differences once: bounded, as bodies come from targets
        if removed and added and len(removed) * len(out) <= _MAX_MOVE_WORK:
            _find_moves(out, removed, added, "missing", "extra", prefix)
            _find_moves(out, {p: v for p, v in added.items() if p in out and out[p].type == "extra"},
                        removed, "extra", "missing", prefix)

    def _diff_sequence(self, lb: list, rb: list, out: dict[str, Difference],
                       bounded: list[str]) -> None:
        """Records or lines, aligned, each difference under its own index."""
        records = type(lb) is Records
        budget = [_MAX_SEQUENCE_DIFFS]

        def put(path: str, d: Difference) -> None:
            if budget[0] > 0 and path not in out:
                out[path] = d
                budget[0] -= 1

        def pair(i: int, lv: Any, rv: Any) -> None:
            if _strict_equal(lv, rv):
                return
            if records and isinstance(lv, (dict, list)) and type(lv) is type(rv):
                sub: dict[str, Difference] = {}
                self._diff_tree(lv, rv, sub, f"body[{i}]", bounded)
                for path, d in sub.items():
                    put(path, d)
            else:
                kind = "changed" if type(lv) is type(rv) else "type_changed"
                put(f"body[{i}]", Difference(kind, truncate_value(lv), truncate_value(rv)))

        if len(lb) == len(rb):
            for i, (lv, rv) in enumerate(zip(lb, rb)):
                pair(i, lv, rv)
            return
        key = (lambda v: repr(v)) if records else (lambda v: v)
        # autojunk (difflib's default) treats lines seen in over 1% of a long body as junk: without
        # it, 1000 repeated lines (blank lines in a page) took 0.34 s to align, 5000 took 2.8 s,
        # with it 1-10 ms (measured here); the alignment around such lines is a little coarser.
        matcher = SequenceMatcher(None, [key(v) for v in lb], [key(v) for v in rb])
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                continue
            common = min(i2 - i1, j2 - j1)
            for k in range(common):
                pair(i1 + k, lb[i1 + k], rb[j1 + k])
            for i in range(i1 + common, i2):
                put(f"body[{i}]", Difference("missing", truncate_value(lb[i]), None,
                                             leaves=_leaves(lb[i]) if records else None))
            for j in range(j1 + common, j2):
                put(f"body[{j}]", Difference("extra", None, truncate_value(rb[j]),
                                             leaves=_leaves(rb[j]) if records else None))

    def _diff(self, left: Response, right: Response, bodies: dict[int, Any],
              bounded: list[str]) -> dict[str, Difference]:
        out: dict[str, Difference] = {}
        if left.error is not None or right.error is not None:
            if left.error != right.error:
                out["error"] = Difference("error", left.error, right.error)
            if left.status != right.status:
                out["status"] = Difference("changed", left.status, right.status)
            return self._drop_ignored(out)
        if left.status != right.status:
            out["status"] = Difference("changed", left.status, right.status)
        self._diff_headers(self._compared_headers(left), self._compared_headers(right), out)
        body_differs = False
        if left.body != right.body or self._codec(left) != self._codec(right):
            for r in (left, right):
                if id(r) not in bodies:
                    bodies[id(r)] = self._parsed_body(r)
            body: dict[str, Difference] = {}
            self._diff_bodies(bodies[id(left)], bodies[id(right)], body, bounded)
            # differences in ignored fields only (a Host echoed back) are no change of content
            body = self._drop_ignored(body)
            body_differs = bool(body)
            out.update(body)
        if not body_differs and out:
            for path in _VALIDATORS:
                out.pop(path, None)
        return self._drop_ignored(out)

    @staticmethod
    def _codec(r: Response) -> tuple[str, str]:
        ctype = cenc = ""
        for name, value in r.headers:
            lower = name.lower()
            if lower == "content-type":
                ctype = value.lower()
            elif lower == "content-encoding":
                cenc += value.lower()
        return ctype, cenc

    def diff(self, left: Response, right: Response) -> dict[str, Difference]:
        return self._diff(left, right, {}, [])

    def compare(self, primary: Response, secondary: Response, candidate: Response) -> Comparison:
        # Hot path: most mirrored requests are byte-identical on all three targets.
        if (primary.body == secondary.body == candidate.body
                and primary.status == secondary.status == candidate.status
                and primary.error == secondary.error == candidate.error):
            ph = self._compared_headers(primary)
            if ph == self._compared_headers(secondary) == self._compared_headers(candidate):
                return Comparison(raw={}, noise={}, identical=True)
        bodies: dict[int, Any] = {}
        wide: list[str] = []
        fp, fs, fc = failed(primary), failed(secondary), failed(candidate)
        if not (fp or fs) or fc:
            # The baseline answered (or everyone failed alike): Diffy's comparison. A
            # failing candidate is the candidate's own signal.
            noise = self._diff(primary, secondary, bodies, wide)
            raw = self._diff(primary, candidate, bodies, wide)
            who = () if fp and fs and fc else tuple(
                n for n, f in (("primary", fp), ("secondary", fs), ("candidate", fc)) if f)
            return Comparison(raw=raw, noise=noise, identical=False, failed=who,
                              bounded=self._bounded(bodies, wide))
        # The baseline failed on its own and the candidate answered: the candidate is judged
        # against the healthy master if there is one (none: nothing to judge). The masters'
        # disagreement (the failure itself: `error`, `status`) is noise, as in Diffy.
        who = tuple(n for n, f in (("primary", fp), ("secondary", fs)) if f)
        noise = self._diff(primary, secondary, bodies, wide)
        if fp and not fs:
            raw = self._diff(secondary, candidate, bodies, wide)
        elif fs and not fp:
            raw = self._diff(primary, candidate, bodies, wide)
        else:
            raw = {}
        return Comparison(raw=raw, noise=noise, identical=False, failed=who, baseline_failed=True,
                          bounded=self._bounded(bodies, wide))

    @staticmethod
    def _bounded(bodies: dict[int, Any], wide: list[str]) -> tuple[str, ...]:
        deep = [b.bounded for b in bodies.values() if getattr(b, "bounded", None)]
        return tuple(deep + wide[:1])
