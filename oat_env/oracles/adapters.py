"""Oracle adapters of the chat-data dueling ids (``oat/TLDR-Duel-v0``, ``oat/UltraFeedback-Duel-v0``):
a reward model that scores JSON message-list prompts, and a preference oracle whose references are
derived from the prompt. :mod:`oat_env.registration` wraps the env's oracle in them and re-exports both.
"""

from __future__ import annotations

from typing import Any

from oat_env.data.chat_data import decode_messages, render_transcript
from oat_env.envs.dueling import as_preference_oracle
from oat_env.oracles.reward_model import RewardModelOracle

__all__ = ["MessagesRewardModelOracle", "PromptDerivedReferences"]


class MessagesRewardModelOracle(RewardModelOracle):
    """A reward model for ``chat_format="messages"`` prompts: the prompt is a JSON message list
    (:func:`~oat_env.data.chat_data.encode_messages`), and the scored text is the RM tokenizer's
    chat template over the whole conversation plus the assistant response."""

    def format(self, prompt: str, response: str) -> str:
        messages = [*decode_messages(prompt), {"role": "assistant", "content": response}]
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return render_transcript(messages[:-1]) + response


class PromptDerivedReferences:
    """Preference oracle adapter: the references it forwards are ``derive(prompt)``.

    Used by ``oat/TLDR-Duel-v0`` to give reference-based oracles the *post* (parsed out of the
    prompt, :func:`~oat_env.data.chat_data.tldr_post`) instead of the human summary, so that the
    human summary stays a competitor (win rates) rather than the yardstick. Whatever references
    the env passes are replaced.
    """

    def __init__(self, oracle: Any, derive: Any, bt_temperature: float = 1.0):
        self.oracle = as_preference_oracle(oracle, bt_temperature)
        self.derive = derive

    def __repr__(self) -> str:
        return f"PromptDerivedReferences({self.oracle!r}, derive={getattr(self.derive, '__name__', self.derive)})"

    def compare(self, prompts: Any, responses_a: Any, responses_b: Any, references: Any = None) -> Any:
        return self.oracle.compare(prompts, responses_a, responses_b, references=[self.derive(p) for p in prompts])
