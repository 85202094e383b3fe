"""S3's own refusals of a replication configuration (``PutBucketReplication``), in the sandbox.

moto stores any replication configuration it can parse (moto 5.2), so a rule that S3 would
refuse, and that would fail the custom resource and roll the stack back in AWS, would pass
here. :class:`ReplicationCheck`, in front of moto like :class:`sandbox.s3_post_policy.PolicyCheck`,
refuses what S3 documents or answers for the rule fields the stacks write
(runtime/handlers/attachment_replication.py):

- ``Destination.Metrics.EventThreshold`` without ``ReplicationTime`` enabled: S3 answers
  ``InvalidArgument: Metrics cannot contain an event threshold when ReplicationTime is not
  specified or Disabled`` (seen by crossplane-contrib/provider-aws#1117 and
  pulumi/pulumi-aws#5806); replication metrics themselves need no Replication Time Control
  ("Receiving replication failure events", S3 User Guide).
- a rule with a ``Filter`` but no ``DeleteMarkerReplication`` ("If you specify a Filter in your
  replication configuration, you must also include a DeleteMarkerReplication element",
  DeleteMarkerReplication, S3 API reference).

Everything else goes to moto unchanged.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from typing import Any

from sandbox.s3_post_policy import PolicyRefusal, WsgiApp, refusal_response

__all__ = ["ReplicationCheck", "check_replication"]

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def check_replication(body: bytes) -> None:
    """Raise :class:`PolicyRefusal` for a configuration S3 refuses; malformed XML is moto's."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return
    ns = _NS if root.tag.startswith(_NS) else ""

    def child(element: ElementTree.Element | None, path: str) -> ElementTree.Element | None:
        if element is None:
            return None
        return element.find("/".join(f"{ns}{part}" for part in path.split("/")))

    for rule in root.iter(f"{ns}Rule"):
        rule_id = getattr(child(rule, "ID"), "text", None) or "(no ID)"
        if child(rule, "Filter") is not None and child(rule, "DeleteMarkerReplication") is None:
            raise PolicyRefusal(
                400,
                "InvalidRequest",
                f"rule {rule_id}: DeleteMarkerReplication must be specified with a Filter",
            )
        destination = child(rule, "Destination")
        rtc_status = getattr(child(destination, "ReplicationTime/Status"), "text", None)
        if child(destination, "Metrics/EventThreshold") is not None and rtc_status != "Enabled":
            raise PolicyRefusal(
                400,
                "InvalidArgument",
                "Metrics cannot contain an event threshold when ReplicationTime is not "
                "specified or Disabled",
            )


class ReplicationCheck:
    """WSGI middleware in front of moto: ``PUT /<bucket>?replication`` is checked as S3 checks
    it (:func:`check_replication`); moto stores what passes."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        query = str(environ.get("QUERY_STRING", ""))
        names = {part.split("=", 1)[0] for part in query.split("&")}
        if environ.get("REQUEST_METHOD") != "PUT" or "replication" not in names:
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
        try:
            check_replication(body)
        except PolicyRefusal as refusal:
            return refusal_response(refusal, start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)
