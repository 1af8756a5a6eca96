"""The model against transformers' GptOssForCausalLM: logits, loss and gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from transformers import GptOssConfig, GptOssForCausalLM

from gpt_oss_20b import gpt_oss_20b_configs
from gpt_oss_20b.model.args import ModelArgs
from gpt_oss_20b.model.model import Transformer
from gpt_oss_20b.model.state_dict_adapter import GptOssStateDictAdapter

from .conftest import build_hf_model, hf_checkpoint, hf_checkpoint_grads

LOGITS_ATOL = 1e-5


def load_from_hf(hf_model: torch.nn.Module, args: ModelArgs) -> Transformer:
    model = Transformer(args)
    adapter = GptOssStateDictAdapter(args, None)
    model.load_state_dict(adapter.from_hf(hf_checkpoint(hf_model)))
    return model.eval()


def random_tokens(args: ModelArgs, batch: int, seq_len: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, args.vocab_size, (batch, seq_len), generator=generator)


def test_logits_match_transformers(debug_args: ModelArgs) -> None:
    hf_model = build_hf_model(debug_args)
    model = load_from_hf(hf_model, debug_args)
    tokens = random_tokens(debug_args, batch=2, seq_len=64)
    with torch.no_grad():
        expected = hf_model(tokens).logits
        logits = model(tokens)
    assert logits.shape == (2, 64, debug_args.vocab_size)
    assert (logits - expected).abs().max().item() <= LOGITS_ATOL


def test_the_sliding_window_cuts_into_the_test_sequence(debug_args: ModelArgs) -> None:
    """The logits test proves the window only if the window changes its 64-token logits."""
    assert debug_args.sliding_window < 64
    hf_model = build_hf_model(debug_args)
    tokens = random_tokens(debug_args, batch=1, seq_len=64)
    unwindowed = dataclasses.replace(debug_args, sliding_window=64)
    with torch.no_grad():
        windowed_logits = load_from_hf(hf_model, debug_args)(tokens)
        full_logits = load_from_hf(hf_model, unwindowed)(tokens)
    assert not torch.allclose(windowed_logits, full_logits)
    # Up to the window, windowed and full attention see the same keys.
    window = debug_args.sliding_window
    torch.testing.assert_close(windowed_logits[:, :window], full_logits[:, :window])


def test_loss_and_gradients_match_transformers(debug_args: ModelArgs) -> None:
    hf_model = build_hf_model(debug_args).train()
    model = load_from_hf(hf_model, debug_args).train()
    tokens = random_tokens(debug_args, batch=2, seq_len=32)
    # The pad token's embedding row gets no gradient (padding_idx): put it in the input.
    tokens[:, 3] = debug_args.pad_token_id
    inputs, labels = tokens[:, :-1], tokens[:, 1:]

    hf_logits = hf_model(inputs).logits
    hf_loss = F.cross_entropy(hf_logits.flatten(0, 1), labels.flatten())
    hf_loss.backward()
    loss = F.cross_entropy(model(inputs).flatten(0, 1), labels.flatten())
    loss.backward()

    torch.testing.assert_close(loss, hf_loss, rtol=1e-5, atol=1e-6)
    adapter = GptOssStateDictAdapter(debug_args, None)
    grads = adapter.to_hf({name: p.grad for name, p in model.named_parameters()})
    hf_grads = hf_checkpoint_grads(hf_model)
    assert grads.keys() == hf_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, hf_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_init_weights_on_meta_then_materialize(debug_args: ModelArgs) -> None:
    """The runtime's path: build on meta, to_empty, init_weights; deterministic per seed."""

    def materialize(seed: int) -> Transformer:
        with torch.device("meta"):
            model = Transformer(debug_args)
        model.to_empty(device="cpu")
        torch.manual_seed(seed)
        model.init_weights(buffer_device=torch.device("cpu"))
        return model

    first, second = materialize(0), materialize(0)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    reference = Transformer(debug_args)
    assert torch.equal(first.rope_cache, reference.rope_cache)
    assert all(torch.isfinite(p).all() for p in first.parameters())


def test_parameters_are_fp32_master_weights(debug_args: ModelArgs) -> None:
    assert all(p.dtype == torch.float32 for p in Transformer(debug_args).parameters())


def test_full_size_parameter_count_matches_transformers() -> None:
    """On the meta device: no memory, the exact count of the full-size model."""
    args = gpt_oss_20b_configs["20.9B"]
    with torch.device("meta"):
        model = Transformer(args)
        hf_model = GptOssForCausalLM(GptOssConfig.from_dict(args.to_hf()))
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in hf_model.parameters())
    assert count == 20914757184
    nparams, flops_per_token = args.get_nparams_and_flops(model, seq_len=2048)
    assert nparams == count
    assert flops_per_token > 6 * (4187440704 - args.vocab_size * args.dim)


@pytest.mark.full_size
def test_full_size_logits_match_transformers() -> None:
    args = gpt_oss_20b_configs["20.9B"]
    hf_model = build_hf_model(args)
    model = load_from_hf(hf_model, args)
    tokens = random_tokens(args, batch=1, seq_len=16)
    with torch.no_grad():
        expected = hf_model(tokens).logits
        logits = model(tokens)
    assert (logits - expected).abs().max().item() <= LOGITS_ATOL


def test_load_balancing_loss_matches_transformers(debug_args: ModelArgs) -> None:
    """The loss plus router_aux_loss_coef times the load-balancing loss, and its gradients, as
    transformers computes them with output_router_logits."""
    hf_model = build_hf_model(debug_args).train()
    hf_model.config.output_router_logits = True
    model = load_from_hf(hf_model, debug_args).train()
    tokens = random_tokens(debug_args, batch=2, seq_len=32)
    inputs, labels = tokens[:, :-1], tokens[:, 1:]

    hf_out = hf_model(inputs)
    hf_aux = hf_out.aux_loss
    hf_loss = F.cross_entropy(hf_out.logits.flatten(0, 1), labels.flatten())
    (hf_loss + debug_args.router_aux_loss_coef * hf_aux).backward()
    logits = model(inputs)
    aux = model.load_balancing_loss()
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
    (loss + debug_args.router_aux_loss_coef * aux).backward()

    torch.testing.assert_close(aux, hf_aux, rtol=1e-5, atol=1e-6)
    adapter = GptOssStateDictAdapter(debug_args, None)
    grads = adapter.to_hf({name: p.grad for name, p in model.named_parameters()})
    hf_grads = hf_checkpoint_grads(hf_model)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, hf_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_grouped_mm_matches_the_expert_loop(debug_args: ModelArgs) -> None:
    """torch._grouped_mm and the per-expert loop: same outputs, same gradients."""
    results = []
    for grouped in (True, False):
        torch.manual_seed(0)
        model = Transformer(dataclasses.replace(debug_args, use_grouped_mm=grouped))
        model.init_weights()
        tokens = random_tokens(debug_args, batch=2, seq_len=32)
        loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        results.append((loss, {name: p.grad for name, p in model.named_parameters()}))
    (loss, grads), (loop_loss, loop_grads) = results
    torch.testing.assert_close(loss, loop_loss, rtol=1e-6, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, loop_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_expert_bias_changes_choices_not_weights(debug_args: ModelArgs) -> None:
    """The auxiliary-loss-free bias moves tokens to the favoured expert; the weights stay the
    router's own scores."""
    torch.manual_seed(0)
    moe = Transformer(debug_args).layers["0"].moe
    moe.init_weights(debug_args.initializer_range)
    x = torch.randn(64, debug_args.dim)
    _, experts, _ = moe.router(x, moe.expert_bias)
    bias = torch.zeros(debug_args.num_experts)
    bias[0] = 10.0
    weights, biased, _ = moe.router(x, bias)
    assert not (experts == 0).any(dim=-1).all()
    assert (biased == 0).any(dim=-1).all()
    assert (weights > 0).all() and (weights <= 1).all()
