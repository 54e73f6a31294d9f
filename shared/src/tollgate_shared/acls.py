"""Each service's Kafka ACLs, read from its spec, and granting them.

A service's user may write the topics it publishes and read those it subscribes to, in
consumer groups named `<service>.…`; each subscription's dead-letter topic it may write
(what it cannot apply) and read (`replay-dlq`). Nothing else: a forged `PaymentSucceeded`
needs checkout's credentials. WRITE also covers an idempotent producer's id, and READ a
group's offsets; both imply DESCRIBE. The broker must run an authorizer that denies what
no ACL allows (Kafka's default once one is configured).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import CreateAclsRequest

from .runtime import ServiceSpec

# Kafka's protocol codes (org.apache.kafka.common.acl / resource).
RESOURCE = {"topic": 2, "group": 3}
OPERATION = {"Read": 3, "Write": 4}
LITERAL, PREFIXED, ALLOW = 3, 4, 3
SECURITY_DISABLED = 54


@dataclass(frozen=True)
class Acl:
    principal: str
    resource: Literal["topic", "group"]
    name: str
    operation: Literal["Read", "Write"]
    prefixed: bool = False

    def __str__(self) -> str:
        pattern = "prefix" if self.prefixed else "literal"
        return f"{self.principal} {self.operation} {self.resource} {self.name} ({pattern})"


def principal_of(spec: ServiceSpec) -> str:
    return f"User:tollgate-{spec.name}"


def acls_for(spec: ServiceSpec, principal: str | None = None, group_prefix: str | None = None) -> list[Acl]:
    """What `spec`'s user may do: `principal` and `group_prefix` where a deployment names
    them otherwise than `User:tollgate-<service>` and `<service>` (the `GROUP_ID` setting)."""
    who = principal or principal_of(spec)
    acls = [Acl(who, "topic", t.name, "Write") for t in spec.publishes]
    for s in spec.subscriptions:
        acls.append(Acl(who, "topic", s.topic.name, "Read"))
        acls += [Acl(who, "topic", s.topic.dlq, "Write"), Acl(who, "topic", s.topic.dlq, "Read")]
    if spec.subscriptions:
        acls.append(Acl(who, "group", f"{group_prefix or spec.name}.", "Read", prefixed=True))
    return acls


async def grant(bootstrap_servers: str, acls: Iterable[Acl], **options: Any) -> int:
    """Create each ACL (one already there is left as it is); returns how many were asked.
    Needs a user allowed to alter the cluster's ACLs (on the dev stack: the PLAINTEXT
    listener's, a super user)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, **options)
    await client.bootstrap()
    count = 0
    try:
        node = client.get_random_node()
        for acl in acls:
            request = CreateAclsRequest(
                RESOURCE[acl.resource],
                acl.name,
                PREFIXED if acl.prefixed else LITERAL,
                acl.principal,
                "*",
                OPERATION[acl.operation],
                ALLOW,
            )
            response = await client.send(node, request)
            for code, message in response.creation_responses:
                if code == SECURITY_DISABLED:
                    raise KafkaError("the brokers run no authorizer, so ACLs cannot be granted or enforced")
                if code:
                    raise KafkaError(f"granting {acl}: error {code}: {message}")
            count += 1
    finally:
        await client.close()
    return count
