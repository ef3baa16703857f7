"""The conversation core: one session's state machine, with no transport in it."""

from voicewire.conversation.core import Conversation, ConversationConfig, Deps

__all__ = ["Conversation", "ConversationConfig", "Deps"]
