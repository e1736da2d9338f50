"""Our declared-path redaction against nameko's ``get_redacted_args`` on the same entrypoints:
identical wherever nameko is right, and right where it is not (a list index mid-path, a name
that arrives through ``**kwargs``, values inside tuples)."""

from __future__ import annotations

from typing import Any

import pytest
from nameko.containers import ServiceContainer
from nameko.rpc import Rpc, rpc
from nameko.testing.utils import get_extension
from nameko.utils import REDACTED, get_redacted_args

from nameko_chassis.probe.redaction import declared_redaction


class Shapes:
    name = "shapes"

    @rpc(sensitive_arguments=("a",))
    def one(self, a, b=None):  # noqa: ANN001, ANN201
        pass

    @rpc(sensitive_arguments=("a.x", "b.y.z", "c"))
    def nested(self, a, b, c=1):  # noqa: ANN001, ANN201
        pass

    @rpc(sensitive_arguments="a[1]")
    def leaf_index(self, a):  # noqa: ANN001, ANN201
        pass

    @rpc(sensitive_arguments=("a.missing", "nope", "b.k"))
    def absent(self, a, b="string"):  # noqa: ANN001, ANN201
        pass

    @rpc(sensitive_arguments=("args", "kw.token"))
    def varargs(self, *args, kw=None):  # noqa: ANN001, ANN201, ANN002
        pass

    @rpc(sensitive_arguments=("items[0].token",))
    def mid_index(self, items):  # noqa: ANN001, ANN201
        pass

    @rpc(sensitive_arguments=("password",))
    def through_kwargs(self, user, **kwargs):  # noqa: ANN001, ANN201, ANN003
        pass


_containers: list[ServiceContainer] = []  # extensions hold their container by weak reference


def entrypoint(method: str) -> Any:
    container = ServiceContainer(Shapes)
    _containers.append(container)
    return get_extension(container, Rpc, method_name=method)


SAME = [  # (method, args, kwargs): nameko is right here, we must agree exactly
    ("one", ("s",), {}),
    ("one", (), {"a": {"deep": [1, 2]}, "b": 2}),
    ("one", ("s", "t"), {}),
    ("nested", ({"x": 1, "y": 2}, {"y": {"z": 3, "w": 4}}), {}),
    ("nested", ({"x": 1}, {"y": {"w": 4}}), {"c": 5}),  # b.y.z absent: added, like nameko
    ("nested", ("not-a-dict", {"y": "str"}), {}),
    ("nested", ({}, {}), {}),
    ("leaf_index", ([1, 2, 3],), {}),
    ("leaf_index", ([1],), {}),  # index out of range: nothing to hide
    ("leaf_index", ({"1": "s"},), {}),
    ("absent", ({"present": 1},), {}),
    ("absent", ({"present": 1},), {"b": {"k": "v", "j": "w"}}),
    ("varargs", (1, 2, 3), {}),
    ("varargs", (), {"kw": {"token": "t", "other": 1}}),
    ("varargs", (), {"kw": None}),
    ("mid_index", ([],), {}),
    ("through_kwargs", ("ann",), {}),
    ("through_kwargs", ("ann",), {"note": "n"}),
]


@pytest.mark.parametrize(("method", "args", "kwargs"), SAME)
def test_same_results_as_nameko(method: str, args: tuple, kwargs: dict) -> None:
    ep = entrypoint(method)
    assert declared_redaction(ep, args, kwargs) == get_redacted_args(ep, *args, **kwargs)


def test_a_list_index_mid_path_is_followed() -> None:
    ep = entrypoint("mid_index")
    items = [{"token": "t-1", "sku": "A"}, {"token": "t-2"}]
    nameko = get_redacted_args(ep, items)
    assert nameko["items"][0]["token"] == "t-1"  # nameko: `0 in list` is membership, not index
    ours = declared_redaction(ep, (items,), {})
    assert ours == {"items": [{"token": REDACTED, "sku": "A"}, {"token": "t-2"}]}
    assert items[0]["token"] == "t-1"  # copied along the path, the original untouched


def test_a_name_arriving_through_kwargs_is_hidden() -> None:
    ep = entrypoint("through_kwargs")
    nameko = get_redacted_args(ep, "ann", password="hunter2")
    assert nameko["kwargs"]["password"] == "hunter2"  # nameko looks at parameter names only
    ours = declared_redaction(ep, ("ann",), {"password": "hunter2"})
    assert ours == {"user": "ann", "kwargs": {"password": REDACTED}}


def test_a_path_through_a_string_does_not_raise() -> None:
    ep = entrypoint("mid_index")
    with pytest.raises(TypeError):  # nameko: `0 in "string"`
        get_redacted_args(ep, "string")
    assert declared_redaction(ep, ("string",), {}) == {"items": "string"}


def test_tuples_are_redacted_too() -> None:
    ep = entrypoint("leaf_index")
    assert get_redacted_args(ep, (1, "s"))["a"] == (1, "s")  # nameko: TypeError, ignored
    assert declared_redaction(ep, ((1, "s"),), {}) == {"a": (1, REDACTED)}


class Generated:
    name = "generated"

    @rpc(sensitive_arguments=("a.k1", "b"))
    def two(self, a, b=None):  # noqa: ANN001, ANN201
        pass

    @rpc(sensitive_arguments=("a.k1.k2", "c.k3", "b.k0.k1"))
    def deep(self, a, b=None, c=None):  # noqa: ANN001, ANN201
        pass

    @rpc(sensitive_arguments=("x", "y.k2"))
    def keyword_only(self, x, *, y=None, z=3):  # noqa: ANN001, ANN201
        pass

    @rpc(sensitive_arguments=("a.k0", "a.k3.k1", "d"))
    def defaults(self, a=None, d="default", e=None):  # noqa: ANN001, ANN201
        pass


def _value(rng: Any, depth: int) -> Any:
    """Dicts (keys k0..k3), strings, ints, None: the shapes where nameko's membership-then-index
    walk is right (no lists mid-path; those are the cases above)."""
    kind = rng.random()
    if depth < 3 and kind < 0.5:
        return {f"k{i}": _value(rng, depth + 1) for i in range(4) if rng.random() < 0.6}
    if kind < 0.7:
        return rng.choice(["s", "secret", "", "k1"])
    if kind < 0.9:
        return rng.randrange(100)
    return None


def _generated_calls() -> list[tuple[str, tuple, dict]]:
    import random

    rng = random.Random(20261202)
    calls: list[tuple[str, tuple, dict]] = []
    params = {"two": ["a", "b"], "deep": ["a", "b", "c"], "keyword_only": ["x"],
              "defaults": ["a", "d", "e"]}
    for _ in range(400):
        method = rng.choice(sorted(params))
        names = params[method]
        values = [_value(rng, 0) for _ in names]
        n_positional = rng.randrange(len(names) + 1)
        args = tuple(values[:n_positional])
        kwargs = {name: v for name, v in zip(names[n_positional:], values[n_positional:],
                                                 strict=True) if rng.random() < 0.8}
        if method == "keyword_only":
            if not args and "x" not in kwargs:
                kwargs["x"] = values[0]
            if rng.random() < 0.7:
                kwargs["y"] = _value(rng, 0)
        if method in ("two", "deep") and not args and "a" not in kwargs:
            kwargs["a"] = values[0]
        calls.append((method, args, kwargs))
    return calls


def test_same_results_as_nameko_on_generated_shapes() -> None:
    container = ServiceContainer(Generated)
    eps = {m: get_extension(container, Rpc, method_name=m)
           for m in ("two", "deep", "keyword_only", "defaults")}
    compared = 0
    for method, args, kwargs in _generated_calls():
        ep = eps[method]
        try:
            expected = get_redacted_args(ep, *args, **kwargs)
        except (TypeError, KeyError):  # nameko fails on a path through a string: not "right"
            continue
        assert declared_redaction(ep, args, kwargs) == expected, (method, args, kwargs)
        compared += 1
    assert compared >= 300
