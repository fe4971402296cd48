"""D-Bus signatures for the virtual BlueZ's ``ServiceInterface`` methods and properties, and
the table that declares their read-only properties.

dbus-fast reads each annotation (evaluated in the defining module) for its D-Bus signature;
``Annotated`` keeps them valid Python types for mypy too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from dbus_fast import Variant
from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property

Str = Annotated[str, DBusSignature("s")]
# dbus-fast reads a bare "None" annotation as no signature and fails; this means "no body".
Void = Annotated[None, DBusSignature("")]
Bool = Annotated[bool, DBusSignature("b")]
ObjPath = Annotated[str, DBusSignature("o")]
ObjPaths = Annotated[list[str], DBusSignature("ao")]
Strs = Annotated[list[str], DBusSignature("as")]
Bytes = Annotated[bytes, DBusSignature("ay")]
Options = Annotated[dict[str, Variant], DBusSignature("a{sv}")]
I16 = Annotated[int, DBusSignature("n")]
U16 = Annotated[int, DBusSignature("q")]
U32 = Annotated[int, DBusSignature("u")]
MfrData = Annotated[dict[int, Variant], DBusSignature("a{qv}")]
SvcData = Annotated[dict[str, Variant], DBusSignature("a{sv}")]

Interface = TypeVar("Interface", bound=ServiceInterface)
#: How a property's value is read off the object that exports it.
Getter = Callable[[Any], object]


def read_only_properties(
    **table: tuple[object, Getter],
) -> Callable[[type[Interface]], type[Interface]]:
    """Class decorator: one read-only D-Bus property per ``Name=(signature, getter)``.

    BlueZ objects carry many read-only properties, nearly all an attribute or a constant; as a
    table each is one line instead of a three-line decorated method.  dbus-fast finds properties
    by scanning the class when an interface is created and reads one through
    ``getattr(obj, getter.__name__)``, so each getter is named after its property and set on the
    class before any instance exists.
    """

    def add(cls: type[Interface]) -> type[Interface]:
        for name, (signature, get) in table.items():
            setattr(cls, name, _read_only(name, signature, get))
        return cls

    return add


def _read_only(name: str, signature: object, get: Getter) -> object:
    def getter(self: Any) -> object:
        return get(self)

    getter.__name__ = getter.__qualname__ = name
    # dbus-fast takes the signature from the return annotation, as for a decorated method.
    getter.__annotations__ = {"return": signature}
    return dbus_property(access=PropertyAccess.READ, name=name)(getter)
