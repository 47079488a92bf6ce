"""A mypy plugin that types actor handles: ``ActorHandle[Counter]``'s methods.

Python's typing has no way to say "a handle has its class's methods, each turned into something
with ``.remote``" (a mapped type), so without help ``handle.increment`` is an ``ActorMethod`` of
any arguments and an ``Any`` result. With this plugin (``plugins = ["actorflow.mypy_plugin"]``
in ``[tool.mypy]``), mypy reads the method off the actor's class:

    counter = Counter.remote()              # ActorHandle[Counter]
    counter.increment.remote()              # ObjectRef[int], checked against increment's args
    await counter.increment.remote()        # int
    counter.nope.remote()                   # error: Actor "Counter" has no method "nope"

It also gives a class decorated with ``@actorflow.remote`` its ``remote`` (with ``__init__``'s
parameters) and ``options``, which mypy cannot learn from a class decorator by itself.
``async def`` methods give what they return when awaited; generator methods (which stream) and
overloaded ones keep the untyped form. Only mypy loads this module (it imports mypy).
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.nodes import ARG_STAR, ARG_STAR2, Argument, MemberExpr, TypeInfo, Var
from mypy.plugin import AttributeContext, ClassDefContext, Plugin
from mypy.plugins.common import add_method_to_class
from mypy.subtypes import find_member
from mypy.types import (
    AnyType,
    CallableType,
    Instance,
    Parameters,
    Type,
    TypeOfAny,
    get_proper_type,
)
from mypy.typevars import fill_typevars

HANDLE = "actorflow._private.worker.actor_handle.ActorHandle"
METHOD = "actorflow._private.worker.actor_handle.ActorMethod"
ACTOR_CLASS = "actorflow.actor.ActorClass"
REMOTE = "actorflow.api.remote"
_AWAITED = {"typing.Coroutine"}
_STREAMING = {
    "typing.Generator",
    "typing.Iterator",
    "typing.Iterable",
    "typing.AsyncGenerator",
    "typing.AsyncIterator",
    "typing.AsyncIterable",
}
# Methods every actor has (ActorHandle's own attributes are found without the plugin).
_BUILT_IN = {"__ray_ready__", "__ray_terminate__", "__actorflow_terminate__"}


class ActorflowPlugin(Plugin):
    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        if fullname.startswith(HANDLE + "."):
            return _method_of_handle
        return None

    def get_class_decorator_hook_2(self, fullname: str) -> Callable[[ClassDefContext], bool] | None:
        if fullname == REMOTE:
            return _actor_class
        return None


def _method_of_handle(ctx: AttributeContext) -> Type:
    handle = ctx.type
    if (
        not isinstance(handle, Instance)
        or not handle.args
        or not isinstance(ctx.context, MemberExpr)
    ):
        return ctx.default_attr_type
    actor = get_proper_type(handle.args[0])
    name = ctx.context.name
    if not isinstance(actor, Instance) or name in _BUILT_IN:
        return ctx.default_attr_type
    member = find_member(name, actor, actor)
    if member is None:
        ctx.api.fail(f'Actor "{actor.type.name}" has no method "{name}"', ctx.context)
        return AnyType(TypeOfAny.from_error)
    method = get_proper_type(member)
    if not isinstance(method, CallableType):
        return ctx.default_attr_type  # an overloaded method, or not a method
    result = get_proper_type(method.ret_type)
    if isinstance(result, Instance) and result.type.fullname in _STREAMING:
        return ctx.default_attr_type
    if isinstance(result, Instance) and result.type.fullname in _AWAITED and result.args:
        result = get_proper_type(result.args[-1])
    params = Parameters(method.arg_types, method.arg_kinds, method.arg_names)
    default = get_proper_type(ctx.default_attr_type)  # ActorMethod[..., Any]
    if not isinstance(default, Instance) or default.type.fullname != METHOD:
        return ctx.default_attr_type
    return default.copy_modified(args=[params, result])


def _actor_class(ctx: ClassDefContext) -> bool:
    """``@actorflow.remote`` on a class: mypy keeps the class's own type for a decorated class,
    so give it what ActorClass adds: ``remote(<__init__'s parameters>) -> ActorHandle[Cls]``
    and ``options(**options) -> ActorClass[Cls]``."""
    handle = ctx.api.lookup_fully_qualified_or_none(HANDLE)
    actor_class = ctx.api.lookup_fully_qualified_or_none(ACTOR_CLASS)
    if handle is None or actor_class is None:
        return False  # not analysed yet: ask again
    if not isinstance(handle.node, TypeInfo) or not isinstance(actor_class.node, TypeInfo):
        return True
    info = ctx.cls.info
    if "remote" in info.names:
        return True
    self_type = fill_typevars(info)
    init = info.get_method("__init__")
    signature = init.type if init is not None else None
    any_type = AnyType(TypeOfAny.implementation_artifact)
    if isinstance(signature, CallableType):
        args = [
            Argument(Var(name or f"arg{i}"), typ, None, kind)
            for i, (name, typ, kind) in enumerate(
                zip(signature.arg_names, signature.arg_types, signature.arg_kinds, strict=True)
            )
        ][1:]  # without self
    else:
        args = [
            Argument(Var("args"), any_type, None, ARG_STAR),
            Argument(Var("kwargs"), any_type, None, ARG_STAR2),
        ]
    add_method_to_class(
        ctx.api, ctx.cls, "remote", args, Instance(handle.node, [self_type]), is_classmethod=True
    )
    add_method_to_class(
        ctx.api,
        ctx.cls,
        "options",
        [Argument(Var("options"), any_type, None, ARG_STAR2)],
        Instance(actor_class.node, [self_type]),
        is_classmethod=True,
    )
    return True


def plugin(version: str) -> type[Plugin]:
    return ActorflowPlugin
