"""The daemon's jobs for the home integrations: Home Assistant discovery and Nightscout uploads.

Each is a daemon component (``runtime/daemon.py`` lists them); each returns at once when its
config section is off, so a hub without them pays nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from edge_gateway.logfmt import log

if TYPE_CHECKING:
    from edge_gateway.runtime.daemon import Daemon

LOG = logging.getLogger("edge_gateway.runtime.integrations")


async def homeassistant(d: Daemon) -> None:
    """``[homeassistant] enabled``: retained discovery and states on the home's broker."""
    from edge_gateway.sync.homeassistant import HomeAssistantBridge, broker_settings

    if not d.cfg.homeassistant.enabled:
        return
    assert d.store is not None
    mqtt = broker_settings(d.cfg)
    if mqtt is None:
        log(LOG, logging.WARNING, "homeassistant.disabled",
            reason="no broker: set homeassistant.broker or mqtt.host")
        return
    await HomeAssistantBridge(d.store, d.cfg, mqtt).run(d.stop_event)


async def nightscout(d: Daemon) -> None:
    """``[[nightscout]]`` entries: one uploader per site; each drains on stop like the sync."""
    from edge_gateway.sync.nightscout import NightscoutUploader

    if not d.cfg.nightscout:
        return
    assert d.store is not None
    uploaders = [NightscoutUploader(d.store, site, d.cfg.gateway_id) for site in d.cfg.nightscout]
    async with asyncio.TaskGroup() as tg:
        for up in uploaders:
            tg.create_task(up.run(d.stop_event, drain_timeout_s=d.drain_on_stop_s),
                           name=f"nightscout:{up.site.name or up.site.patient}")
