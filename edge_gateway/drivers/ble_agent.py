"""A BlueZ pairing agent (``org.bluez.Agent1``) for passkey entry, alive for one pairing.

BlueZ asks the registered agent of the client that started pairing; without one it can only do
Just Works, which devices that show a passkey refuse.  bleak registers no agent, so we register
ours on a connection of our own (dbus-fast, which bleak uses underneath) for the time of a
pairing.  Capability ``KeyboardOnly``: the gateway can type the six digits the device displays.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method

from edge_gateway.errors import DeviceError

AGENT_PATH = "/edge_gateway/agent"

ObjPath = Annotated[str, DBusSignature("o")]
Str = Annotated[str, DBusSignature("s")]
U32 = Annotated[int, DBusSignature("u")]
U16 = Annotated[int, DBusSignature("q")]
# dbus-fast reads a bare "None" annotation as no signature and fails; this means "no body".
Void = Annotated[None, DBusSignature("")]


def _address(device_path: str) -> str:
    return device_path.rsplit("/", 1)[-1].removeprefix("dev_").replace("_", ":")


class _Agent(ServiceInterface):
    def __init__(self, passkey: Callable[[str], Awaitable[int]] | None) -> None:
        super().__init__("org.bluez.Agent1")
        self._passkey = passkey

    @dbus_method()
    def Release(self) -> Void:
        pass

    @dbus_method()
    async def RequestPasskey(self, device: ObjPath) -> U32:
        if self._passkey is None:
            raise DBusError("org.bluez.Error.Rejected", "no passkey source")
        value = int(await self._passkey(_address(device)))
        if not 0 <= value <= 999999:
            raise DBusError("org.bluez.Error.Rejected", "passkey must be 6 digits")
        return value

    @dbus_method()
    def DisplayPasskey(self, device: ObjPath, passkey: U32, entered: U16) -> Void:
        pass

    @dbus_method()
    def RequestConfirmation(self, device: ObjPath, passkey: U32) -> Void:
        # Numeric comparison: the gateway has no display; accept (the device confirms).
        pass

    @dbus_method()
    def RequestAuthorization(self, device: ObjPath) -> Void:
        pass

    @dbus_method()
    def AuthorizeService(self, device: ObjPath, uuid: Str) -> Void:
        pass

    @dbus_method()
    def Cancel(self) -> Void:
        pass


class PairingAgent:
    """``async with PairingAgent(passkey_cb):`` registers a default agent, then removes it."""

    def __init__(self, passkey: Callable[[str], Awaitable[int]] | None) -> None:
        self._agent = _Agent(passkey)
        self._bus: MessageBus | None = None

    async def _call(self, member: str, signature: str, body: list[object]) -> None:
        assert self._bus is not None
        reply = await self._bus.call(Message(
            destination="org.bluez", path="/org/bluez", interface="org.bluez.AgentManager1",
            member=member, signature=signature, body=body,
        ))
        if reply is None or reply.message_type == MessageType.ERROR:
            detail = "no reply" if reply is None else f"{reply.error_name}: {reply.body}"
            raise DeviceError("agent", f"{member} failed: {detail}", retryable=False)

    async def __aenter__(self) -> PairingAgent:
        self._bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        self._bus.export(AGENT_PATH, self._agent)
        try:
            await self._call("RegisterAgent", "os", [AGENT_PATH, "KeyboardOnly"])
            await self._call("RequestDefaultAgent", "o", [AGENT_PATH])
        except BaseException:
            self._bus.disconnect()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._bus is None:
            return
        try:
            await self._call("UnregisterAgent", "o", [AGENT_PATH])
        except DeviceError:
            pass
        self._bus.disconnect()
        self._bus = None
