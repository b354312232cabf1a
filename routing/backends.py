"""Judge backends: the models that read a rendered judge prompt and answer "A" or "B".

Every backend takes plain prompt texts (the user turn; a backend applies its model's chat template)
and offers two calls: the log-probabilities of the candidate answers as the next token, and plain
generation, which a judge parses when a backend cannot give log-probabilities.

- ``transformers``: a local HF model (the embedded SmolLM2 by default), batched forward passes.
- ``vllm``: vLLM's offline engine, for GPUs (optional ``gpu`` extra).
- ``openai``: any OpenAI-compatible server (``vllm serve``, llama.cpp, a hosted API).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from curation.errors import CuratorError

CANDIDATES = ("A", "B")
BACKENDS = ("transformers", "vllm", "openai")
TOP_LOGPROBS = 5


@runtime_checkable
class Backend(Protocol):
    """What a judge needs from a model."""

    name: str  # the backend kind, one of BACKENDS
    model_id: str  # the model as recorded on every label it gives
    has_logprobs: bool

    def next_token_logprobs(
        self, prompts: Sequence[str], candidates: Sequence[str] = CANDIDATES
    ) -> list[dict[str, float]] | None:
        """Per prompt, the log-probability of each candidate being the next token.

        A candidate the backend cannot see (outside an API's top-k) is left out of its dict; None
        means this backend gives no log-probabilities at all.
        """
        ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 8) -> list[str]:
        """Greedy continuations of the prompts."""
        ...


def _logsumexp(values: Iterable[float]) -> float:
    values = [v for v in values if v is not None and not math.isinf(v)]
    if not values:
        return -math.inf
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def candidate_logprobs(
    tokens: Iterable[tuple[str, float]], candidates: Sequence[str] = CANDIDATES
) -> dict[str, float]:
    """Fold (token text, log-prob) pairs from a top-k list onto the candidates.

    Tokenizers spell an answer several ways ("A", " A", "A\\n"); every spelling that is the
    candidate once stripped counts towards it. Each token is counted once.
    """
    seen: dict[str, float] = {}
    for token, logprob in tokens:
        if token is None or logprob is None:
            continue
        seen.setdefault(token, logprob)
    out = {}
    for candidate in candidates:
        matches = [lp for tok, lp in seen.items() if tok.strip() == candidate]
        if matches:
            out[candidate] = _logsumexp(matches)
    return out


# ---- transformers ---------------------------------------------------------------------------


def _candidate_token_ids(tokenizer: Any, candidate: str) -> list[int]:
    """Single-token spellings of a candidate in this vocabulary ("A", " A", ...)."""
    ids: set[int] = set()
    for spelling in (candidate, " " + candidate):
        encoded = tokenizer.encode(spelling, add_special_tokens=False)
        if len(encoded) == 1:
            ids.add(encoded[0])
    if not ids:
        raise CuratorError(f"the judge model's vocabulary has no single token for {candidate!r}")
    return sorted(ids)


def _chat_text(tokenizer: Any, prompt: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt


class TransformersBackend:
    """A local causal LM through transformers: float32 on CPU, bfloat16 on a GPU."""

    name = "transformers"
    has_logprobs = True

    def __init__(
        self,
        model: str,
        *,
        model_id: str | None = None,
        device: str = "auto",
        batch_size: int = 8,
        max_length: int = 2048,
    ):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        # bfloat16 is about 4x slower than float32 on CPUs without AVX512 (LAB-NOTES).
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device)
        except OSError as exc:
            raise CuratorError(f"cannot load judge model {model!r}: {exc}") from exc
        self.model.eval()
        self.device = device
        self.model_id = model_id or model
        self.batch_size = max(1, batch_size)
        self.max_length = max_length
        # Left padding keeps every prompt's last token in the last position; truncating on the
        # left keeps the question that ends the prompt.
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._candidate_ids: dict[str, list[int]] = {}

    def _ids(self, candidate: str) -> list[int]:
        if candidate not in self._candidate_ids:
            self._candidate_ids[candidate] = _candidate_token_ids(self.tokenizer, candidate)
        return self._candidate_ids[candidate]

    def _encode(self, prompts: Sequence[str]):
        texts = [_chat_text(self.tokenizer, p) for p in prompts]
        return self.tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=False,  # the chat template already has them
        ).to(self.device)

    def next_token_logprobs(
        self, prompts: Sequence[str], candidates: Sequence[str] = CANDIDATES
    ) -> list[dict[str, float]]:
        import torch

        ids = {c: self._ids(c) for c in candidates}
        out: list[dict[str, float]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self._encode(prompts[start : start + self.batch_size])
            with torch.inference_mode():
                logits = self.model(**batch).logits[:, -1, :].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            for row in logprobs:
                out.append(
                    {c: float(torch.logsumexp(row[ids[c]], dim=0)) for c in candidates},
                )
        return out

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 8) -> list[str]:
        import torch

        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self._encode(prompts[start : start + self.batch_size])
            with torch.inference_mode():
                generated = self.model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = generated[:, batch["input_ids"].shape[1] :]
            out.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return out


# ---- vLLM (offline engine) ------------------------------------------------------------------


class VLLMBackend:
    """vLLM's offline engine; needs the ``gpu`` extra (``pip install vllm``)."""

    name = "vllm"
    has_logprobs = True

    def __init__(self, model: str, *, model_id: str | None = None, **engine_args: Any):
        try:
            import vllm
        except ImportError as exc:
            raise CuratorError(
                "the vllm backend needs vLLM: `pip install 'hybrid-curator[gpu]'` "
                "(or serve the model with `vllm serve` and use --backend openai)"
            ) from exc
        self._vllm = vllm
        self.llm = vllm.LLM(model=model, **engine_args)
        self.model_id = model_id or model

    def _chat(self, prompts: Sequence[str], params: Any) -> list[Any]:
        conversations = [[{"role": "user", "content": p}] for p in prompts]
        return self.llm.chat(conversations, params, use_tqdm=False)

    def next_token_logprobs(
        self, prompts: Sequence[str], candidates: Sequence[str] = CANDIDATES
    ) -> list[dict[str, float]]:
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS)
        out = []
        for result in self._chat(prompts, params):
            steps = result.outputs[0].logprobs or []
            first = steps[0] if steps else {}
            pairs = [(lp.decoded_token, lp.logprob) for lp in first.values()]
            out.append(candidate_logprobs(pairs, candidates))
        return out

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 8) -> list[str]:
        params = self._vllm.SamplingParams(max_tokens=max_new_tokens, temperature=0.0)
        return [r.outputs[0].text for r in self._chat(prompts, params)]


# ---- OpenAI-compatible servers --------------------------------------------------------------


def logprobs_from_chat_choice(
    choice: Any, candidates: Sequence[str] = CANDIDATES
) -> dict[str, float] | None:
    """Candidates' log-probs from one chat completion choice; None when it carries none."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    first = content[0]
    pairs = [(first.token, first.logprob)]
    pairs += [(t.token, t.logprob) for t in first.top_logprobs or []]
    return candidate_logprobs(pairs, candidates)


def logprobs_from_completion_choice(
    choice: Any, candidates: Sequence[str] = CANDIDATES
) -> dict[str, float] | None:
    """Candidates' log-probs from one (legacy) completion choice; None when it carries none."""
    logprobs = getattr(choice, "logprobs", None)
    if logprobs is None:
        return None
    pairs: list[tuple[str, float]] = []
    if logprobs.tokens and logprobs.token_logprobs:
        pairs.append((logprobs.tokens[0], logprobs.token_logprobs[0]))
    if logprobs.top_logprobs:
        pairs += list((logprobs.top_logprobs[0] or {}).items())
    if not pairs:
        return None
    return candidate_logprobs(pairs, candidates)


class OpenAIBackend:
    """A model behind an OpenAI-compatible API.

    ``mode="chat"`` (the default) sends each prompt as a chat turn, so the server applies the
    model's chat template, and asks for ``top_logprobs``. ``mode="completions"`` sends the prompt
    text as is, all prompts in one request (batched on vLLM), with ``logprobs``: use it for base
    models or prompts already templated. A server that returns no log-probabilities is detected
    and the judge parses generated answers instead.

    The API key is read from the environment variable named by ``api_key_env`` and handed to the
    client only; it is never stored on this object, recorded or logged, and is masked in the
    errors this backend raises (a server may quote the key it was sent back in its message).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str | None,
        model: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        mode: str = "chat",
        timeout_s: float = 120.0,
        client: Any = None,
    ):
        if mode not in ("chat", "completions"):
            raise CuratorError(f"OpenAI backend mode must be chat or completions, not {mode!r}")
        if client is None:
            try:
                import openai
            except ImportError as exc:
                raise CuratorError("the openai backend needs `pip install openai`") from exc
            client = openai.OpenAI(
                base_url=base_url,
                # Local servers (vLLM, llama.cpp) accept any key; the client insists on one.
                api_key=os.environ.get(api_key_env) or "not-needed",
                timeout=timeout_s,
                max_retries=2,
            )
        self.client = client
        self.api_key_env = api_key_env
        self.base_url = base_url
        self.mode = mode
        self.has_logprobs = True
        if not model:
            model = self._served_model()
        self.model_id = model

    def _served_model(self) -> str:
        try:
            models = list(self.client.models.list())
        except Exception as exc:  # the openai package raises its own error tree
            raise self._failure(f"cannot list models at {self.base_url}", exc) from None
        if not models:
            raise CuratorError(f"the server at {self.base_url} serves no model; name one")
        return models[0].id

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except Exception as exc:
            raise self._failure(f"the judge server at {self.base_url} failed", exc) from None

    def _failure(self, what: str, exc: Exception) -> CuratorError:
        """The server's error as a user error, with the API key masked (and not chained, so no
        traceback can print the original message either)."""
        message = str(exc)
        key = os.environ.get(self.api_key_env)
        if key:
            message = message.replace(key, "***")
        return CuratorError(f"{what}: {message}")

    def next_token_logprobs(
        self, prompts: Sequence[str], candidates: Sequence[str] = CANDIDATES
    ) -> list[dict[str, float]] | None:
        if not self.has_logprobs:
            return None
        found: list[dict[str, float] | None]
        if self.mode == "completions":
            response = self._call(
                self.client.completions.create,
                model=self.model_id,
                prompt=list(prompts),
                max_tokens=1,
                temperature=0.0,
                logprobs=TOP_LOGPROBS,
            )
            choices = sorted(response.choices, key=lambda c: c.index)
            found = [logprobs_from_completion_choice(c, candidates) for c in choices]
        else:
            found = []
            for prompt in prompts:
                response = self._call(
                    self.client.chat.completions.create,
                    model=self.model_id,
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=1,
                    temperature=0.0,
                    logprobs=True,
                    top_logprobs=TOP_LOGPROBS,
                )
                found.append(logprobs_from_chat_choice(response.choices[0], candidates))
        if all(f is None for f in found):
            self.has_logprobs = False  # the server ignores the logprobs request
            return None
        return [f or {} for f in found]

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 8) -> list[str]:
        if self.mode == "completions":
            response = self._call(
                self.client.completions.create,
                model=self.model_id,
                prompt=list(prompts),
                max_tokens=max_new_tokens,
                temperature=0.0,
            )
            return [c.text for c in sorted(response.choices, key=lambda c: c.index)]
        out = []
        for prompt in prompts:
            response = self._call(
                self.client.chat.completions.create,
                model=self.model_id,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_new_tokens,
                temperature=0.0,
            )
            out.append(response.choices[0].message.content or "")
        return out


_ANSWER = re.compile(
    r"(?:answer|response|output|better|winner|choice)\W{0,3}(?:is\W{0,3})?(?:response\s+)?\(?([AB])\b",
    re.IGNORECASE,
)


def parse_answer(text: str | None, candidates: Sequence[str] = CANDIDATES) -> str | None:
    """The candidate a generated answer names: a bare leading letter ("A", "B.", "(B)") or one
    after "answer"/"response" ("The better response is B"); None when it names neither."""
    if not text:
        return None
    stripped = text.strip().lstrip("(*[\"' ")
    for candidate in candidates:
        rest = stripped[len(candidate) :]
        if not stripped.startswith(candidate) or rest[:1].isalnum():
            continue
        # "A good answer..." is the article, not a verdict; "A is better" is a verdict.
        if re.match(r"\s+[a-z]", rest) and not re.match(r"\s+is\b", rest):
            continue
        return candidate
    match = _ANSWER.search(text)
    if match and match.group(1).upper() in candidates:
        return match.group(1).upper()
    return None


SECRET_QUERY = re.compile(r"(key|token|secret|password|auth)", re.IGNORECASE)


def check_server_url(url: str) -> str:
    """An OpenAI-compatible server's URL, refused when it carries a credential.

    The URL is recorded with every label the judge gives (and shown on the Judge page); a
    password in it (``http://user:pass@host``) or a key in its query would be kept in the store
    for anyone who can read it. The key belongs in the variable ``api_key_env`` names.
    """
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- raises on a port that is not a number
    except ValueError as exc:
        raise CuratorError(f"server URL {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CuratorError(f"server URL {url!r}: use http(s)://host[:port]/v1")
    named = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True) if SECRET_QUERY.search(k)]
    if parts.username or parts.password or named:
        raise CuratorError(
            "the server URL holds a credential, and the URL is stored with the labels: put the "
            "key in an environment variable and name it with api_key_env (--api-key-env)"
        )
    return url.strip()


def make_backend(
    kind: str,
    model: str,
    *,
    model_id: str | None = None,
    url: str | None = None,
    batch_size: int = 8,
    device: str = "auto",
    api_key_env: str = "OPENAI_API_KEY",
) -> Backend:
    """A backend by kind; ``model`` is already resolved (a folder or an HF id)."""
    if kind == "transformers":
        return TransformersBackend(model, model_id=model_id, device=device, batch_size=batch_size)
    if kind == "vllm":
        return VLLMBackend(model, model_id=model_id)
    if kind == "openai":
        if not url:
            raise CuratorError(
                "the openai backend needs the server's --url (e.g. http://host:8000/v1)"
            )
        return OpenAIBackend(url, model, api_key_env=api_key_env)
    raise CuratorError(f"unknown judge backend {kind!r}; choose one of {', '.join(BACKENDS)}")
