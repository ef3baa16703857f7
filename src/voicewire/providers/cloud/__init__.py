"""Network providers: OpenAI, ElevenLabs and OpenAI-compatible servers (docs/providers.md).

``net`` holds what they share (timeouts, the retry policy, failures as reasons); each adapter
module speaks one vendor's documented wire format.
"""
