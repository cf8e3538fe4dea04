"""The consumer runner every consuming service uses (no service writes its own poll loop)."""

from shared.consumer.messages import Handler, InvalidMessage, Message, Output
from shared.consumer.runner import ConsumerRunner

__all__ = ["ConsumerRunner", "Handler", "InvalidMessage", "Message", "Output"]
