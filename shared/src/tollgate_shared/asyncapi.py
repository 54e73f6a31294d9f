"""An AsyncAPI 3 document of a service, generated from the ServiceSpec its runtime runs.

Channels are the topics it consumes and publishes, with their Kafka bindings from the
topic catalog; operations say which it receives (and in which consumer group) and which
it sends; each message names its key, its headers and its payload's JSON Schema, taken
from the pydantic contract itself.
"""

from typing import Any

import yaml

from .consumer import Subscription
from .contracts import Event, Topic
from .runtime import ServiceSpec

BINDING_VERSION = "0.5.0"
HEADERS = {
    "type": "object",
    "description": "Set on every message by the outbox relay.",
    "properties": {
        "event_id": {"type": "string", "format": "uuid", "description": "The payload's event_id: deduplicate on it."},
        "event_type": {"type": "string", "description": "The payload's event_type: route on it without parsing."},
        "content-type": {"type": "string", "const": "application/json"},
        "correlation_id": {
            "type": "string",
            "description": "The payload's correlation_id, when it has one: what one customer action caused, "
            "across services (e.g. the Stripe event behind a payment fact).",
        },
    },
    "required": ["event_id", "event_type", "content-type"],
}


def document(spec: ServiceSpec, version: str) -> dict[str, Any]:
    topics = {t.name: t for t in (*(s.topic for s in spec.subscriptions), *spec.publishes)}
    schemas: dict[str, Any] = {}
    messages = {m.__name__: _message(m, t, schemas) for t in topics.values() for m in t.messages}
    operations = {f"receive.{s.name}": _receive(s, spec) for s in spec.subscriptions}
    operations |= {f"send.{t.name}": _send(t) for t in spec.publishes}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": spec.title, "version": version, "description": _describe(spec)},
        "defaultContentType": "application/json",
        "servers": {
            "production": {
                "host": "kafka-bootstrap.kafka:9093",
                "protocol": "kafka-secure",
                "description": "The platform's Kafka, over TLS with SCRAM-SHA-512, one user per service "
                "(the Helm chart's `kafka.bootstrapServers`; docs/security.md has the ACLs).",
                "security": [{"$ref": "#/components/securitySchemes/scram"}],
            },
            "dev": {
                "host": "127.0.0.1:19094",
                "protocol": "kafka-secure",
                "description": "The dev stack's broker (`make run`), as the services reach it: SASL_SSL.",
                "security": [{"$ref": "#/components/securitySchemes/scram"}],
            },
            "dev-tools": {
                "host": "127.0.0.1:19092",
                "protocol": "kafka",
                "description": "The dev stack's PLAINTEXT listener on loopback, for tools (kcat) and tests.",
            },
        },
        "channels": {name: _channel(t) for name, t in sorted(topics.items())},
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": dict(sorted(messages.items())),
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"scram": {"type": "scramSha512", "description": "A Kafka user of the service's own"}},
        },
    }


def to_yaml(doc: dict[str, Any]) -> str:
    text: str = yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)
    return text


def _describe(spec: ServiceSpec) -> str:
    consumed = ", ".join(sorted({s.topic.name for s in spec.subscriptions})) or "nothing"
    published = ", ".join(t.name for t in spec.publishes) or "nothing"
    return (
        f"What the {spec.name} service consumes ({consumed}) and publishes ({published}) on Kafka. "
        "Delivery is at least once: deduplicate on `event_id`. Every topic has a dead-letter topic "
        "`<topic>.dlq` carrying what a consumer set aside, with `dlq_error`, `dlq_source` and `dlq_group` headers."
    )


def _channel(topic: Topic) -> dict[str, Any]:
    config: dict[str, Any] = {"cleanup.policy": topic.config.get("cleanup.policy", "delete").split(",")}
    return {
        "address": topic.name,
        "description": f"{topic.summary} Key: {topic.key}.",
        "messages": {m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in topic.messages},
        "bindings": {
            "kafka": {
                "topic": topic.name,
                "partitions": topic.partitions,
                "replicas": topic.replication_factor,
                "topicConfiguration": config,
                "bindingVersion": BINDING_VERSION,
            }
        },
    }


def _channel_messages(topic: Topic) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{topic.name}/messages/{m.__name__}"} for m in topic.messages]


def _receive(subscription: Subscription[Any, Any], spec: ServiceSpec) -> dict[str, Any]:
    group = f"{spec.name}.{subscription.name}"
    return {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{subscription.topic.name}"},
        "summary": subscription.summary,
        "messages": _channel_messages(subscription.topic),
        "bindings": {"kafka": {"groupId": {"type": "string", "enum": [group]}, "bindingVersion": BINDING_VERSION}},
    }


def _send(topic: Topic) -> dict[str, Any]:
    return {
        "action": "send",
        "channel": {"$ref": f"#/channels/{topic.name}"},
        "summary": f"Published through the transactional outbox: {topic.summary}",
        "messages": _channel_messages(topic),
    }


def _message(model: type[Event], topic: Topic, schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    doc = (model.__doc__ or model.__name__).strip()
    return {
        "name": model.__name__,
        "title": model.__name__,
        "summary": doc.splitlines()[0],
        "description": " ".join(doc.split()),
        "contentType": "application/json",
        "headers": HEADERS,
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        "bindings": {"kafka": {"key": {"type": "string", "description": topic.key}, "bindingVersion": BINDING_VERSION}},
    }
