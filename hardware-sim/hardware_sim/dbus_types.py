"""D-Bus signatures for the virtual BlueZ's ``ServiceInterface`` methods and properties.

dbus-fast reads each annotation (evaluated in the defining module) for its D-Bus signature;
``Annotated`` keeps them valid Python types for mypy too.
"""

from __future__ import annotations

from typing import Annotated

from dbus_fast import Variant
from dbus_fast.annotations import DBusSignature

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
