"""The option-haggling phase of the NBD handshake as a state machine without I/O.

# Ref: NBD protocol ``doc/proto.md``, "Fixed newstyle negotiation", "Option types",
# "Structured replies", "Metadata querying".

:class:`Negotiation` takes one client option at a time (``handle(option, data)``) and returns
the bytes to send back and whether the session goes on, ends, or enters transmission with an
export. The server feeds it from the socket; the tests feed it directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyhv.storage.nbd import protocol as p


@dataclass(frozen=True)
class ExportInfo:
    """What the handshake tells a client about one export."""

    name: str
    size: int
    flags: int  # transmission flags
    min_block: int  # NBD_INFO_BLOCK_SIZE minimum: 1, or the sector size for sparse formats


@dataclass(frozen=True)
class Outcome:
    """One option's answer: ``reply`` to send; then close, or transmission with ``export``."""

    reply: bytes
    close: bool = False
    export: ExportInfo | None = None


class Negotiation:
    """Options of one connection, in order, until NBD_OPT_GO/EXPORT_NAME or NBD_OPT_ABORT.

    :param lookup: export by name (``""`` is the default export), or None when unknown.
    :param names: names for NBD_OPT_LIST.
    :param no_zeroes: the client set NBD_FLAG_C_NO_ZEROES (EXPORT_NAME reply is then short).
    """

    def __init__(
        self,
        lookup: Callable[[str], ExportInfo | None],
        names: Callable[[], list[str]],
        no_zeroes: bool,
    ) -> None:
        self._lookup = lookup
        self._names = names
        self._no_zeroes = no_zeroes
        self.structured = False
        # export name → whether base:allocation was selected with NBD_OPT_SET_META_CONTEXT
        self._meta: tuple[str, bool] = ("", False)

    def block_status_for(self, export: ExportInfo) -> bool:
        """Whether BLOCK_STATUS is allowed in transmission on ``export``."""
        name, selected = self._meta
        return self.structured and selected and name == export.name

    def handle(self, option: int, data: bytes) -> Outcome:
        """Answer one option. Malformed option payloads get NBD_REP_ERR_INVALID, never a crash."""
        try:
            if option == p.NBD_OPT_EXPORT_NAME:
                return self._export_name(data)
            if option == p.NBD_OPT_ABORT:
                return Outcome(p.pack_option_reply(option, p.NBD_REP_ACK), close=True)
            if option == p.NBD_OPT_LIST:
                return self._list(data)
            if option in (p.NBD_OPT_INFO, p.NBD_OPT_GO):
                return self._info(option, data)
            if option == p.NBD_OPT_STRUCTURED_REPLY:
                return self._structured(data)
            if option in (p.NBD_OPT_LIST_META_CONTEXT, p.NBD_OPT_SET_META_CONTEXT):
                return self._meta_context(option, data)
        except p.NbdProtocolError as err:
            return Outcome(_error(option, p.NBD_REP_ERR_INVALID, str(err)))
        return Outcome(_error(option, p.NBD_REP_ERR_UNSUP, f"option {option} is not supported"))

    def _export_name(self, data: bytes) -> Outcome:
        # The old way in: no error reply exists, an unknown name just ends the session.
        try:
            name = data.decode()
        except UnicodeDecodeError:
            return Outcome(b"", close=True)
        export = self._lookup(name)
        if export is None:
            return Outcome(b"", close=True)
        reply = p.pack_export_name_reply(export.size, export.flags, self._no_zeroes)
        return Outcome(reply, export=export)

    def _list(self, data: bytes) -> Outcome:
        if data:
            return Outcome(_error(p.NBD_OPT_LIST, p.NBD_REP_ERR_INVALID, "LIST takes no data"))
        parts = [
            p.pack_option_reply(p.NBD_OPT_LIST, p.NBD_REP_SERVER, p.pack_server_reply(n))
            for n in self._names()
        ]
        parts.append(p.pack_option_reply(p.NBD_OPT_LIST, p.NBD_REP_ACK))
        return Outcome(b"".join(parts))

    def _info(self, option: int, data: bytes) -> Outcome:
        req = p.parse_info_request(data)
        export = self._lookup(req.name)
        if export is None:
            return Outcome(_error(option, p.NBD_REP_ERR_UNKNOWN, f"no export {req.name!r}"))
        infos = [
            p.pack_info_export(export.size, export.flags),
            # Sent even when not asked for: the spec lets the server volunteer it, and the
            # 32 MiB maximum is what keeps clients below our payload limit.
            p.pack_info_block_size(export.min_block, p.PREFERRED_BLOCK_SIZE, p.MAX_PAYLOAD),
        ]
        if p.NBD_INFO_NAME in req.info_types:
            infos.append(p.pack_info_name(export.name))
        parts = [p.pack_option_reply(option, p.NBD_REP_INFO, i) for i in infos]
        parts.append(p.pack_option_reply(option, p.NBD_REP_ACK))
        reply = b"".join(parts)
        return Outcome(reply, export=export) if option == p.NBD_OPT_GO else Outcome(reply)

    def _structured(self, data: bytes) -> Outcome:
        option = p.NBD_OPT_STRUCTURED_REPLY
        if data:
            return Outcome(_error(option, p.NBD_REP_ERR_INVALID, "takes no data"))
        self.structured = True
        return Outcome(p.pack_option_reply(option, p.NBD_REP_ACK))

    def _meta_context(self, option: int, data: bytes) -> Outcome:
        if not self.structured:
            # "Metadata querying": only meaningful once structured replies are on.
            return Outcome(_error(option, p.NBD_REP_ERR_INVALID, "structured replies first"))
        req = p.parse_meta_context_request(data)
        if self._lookup(req.name) is None:
            return Outcome(_error(option, p.NBD_REP_ERR_UNKNOWN, f"no export {req.name!r}"))
        listing = option == p.NBD_OPT_LIST_META_CONTEXT
        selected = any(_matches(q, listing) for q in req.queries) or (listing and not req.queries)
        if not listing:
            self._meta = (req.name, selected)
        parts = []
        if selected:
            ctx = p.pack_meta_context_reply(p.BASE_ALLOCATION_ID, p.BASE_ALLOCATION)
            parts.append(p.pack_option_reply(option, p.NBD_REP_META_CONTEXT, ctx))
        parts.append(p.pack_option_reply(option, p.NBD_REP_ACK))
        return Outcome(b"".join(parts))


def _matches(query: str, listing: bool) -> bool:
    # LIST may ask for a whole namespace ("base:"); SET names contexts exactly.
    return query == p.BASE_ALLOCATION or (listing and query == "base:")


def _error(option: int, reply_type: int, message: str) -> bytes:
    return p.pack_option_reply(option, reply_type, message.encode()[: p.MAX_STRING])
