"""The training loop: build, parallelize, initialize, train, checkpoint, export.

``Trainer(job_config)`` validates the config against the world size and the model before any
process group exists (so bad input fails fast with a ``ConfigError``); ``Trainer.train()`` runs
the job and returns the logged losses. Several trainers can run one after another in one
process group (the tests use that to compare parallelisms cheaply).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import gc
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

from runtime.checkpoint import CheckpointManager, ModelState, TrainState
from runtime.components.loss import fused_output_cross_entropy_loss, wants_fused_output
from runtime.config import ConfigError, JobConfig
from runtime.distributed import ParallelDims
from runtime.distributed.parallelize import dtype_from_name
from runtime.distributed.utils import (
    clip_grad_norm_,
    init_distributed,
    set_seed,
    world_size_from_env,
)
from runtime.hf import export_hf, import_hf
from runtime.metrics import MetricsLogger, StepMetrics, memory_gib, mfu_and_peak, peak_flops
from runtime.moe import LoadBalancer
from runtime.package import resolve_train_spec


class NonFiniteTraining(RuntimeError):
    """The loss or the gradient norm stayed non-finite; ``runtime.train`` prints it and exits 1."""

    exit_code = 1


@dataclass
class TrainResult:
    """What a finished run reports back: losses by step, the last step, the HF export folder."""

    losses: dict[int, float] = field(default_factory=dict)
    final_step: int = 0
    resumed_from: int | None = None
    hf_folder: Path | None = None


def gradient_accumulation_steps(training: Any, dp_degree: int) -> int:
    """Micro-steps per optimizer step so that ``training.global_batch_size`` holds on
    ``dp_degree`` (``training``: the ``[training]`` section, ours or torchtitan's)."""
    local = training.local_batch_size
    global_batch = training.global_batch_size
    if global_batch == -1:
        return 1
    per_step = local * dp_degree
    if global_batch % per_step:
        raise ConfigError(
            f"training.global_batch_size {global_batch} must be a multiple of local_batch_size "
            f"{local} x data-parallel degree {dp_degree} = {per_step}"
        )
    return global_batch // per_step


def _flavor_args(spec: Any, model_config: Any) -> Any:
    """A copy of the flavor's ModelArgs with ``model.args_overrides`` applied."""
    args = copy.deepcopy(spec.model_args[model_config.flavor])
    fields = {f.name for f in dataclasses.fields(args)}
    for key, value in model_config.args_overrides.items():
        if key not in fields:
            raise ConfigError(f"model.args_overrides: {spec.name} ModelArgs has no field '{key}'")
        setattr(args, key, value)
    return args


class Trainer:
    """One training job (see module docstring).

    ``world_size`` defaults to torchrun's ``WORLD_SIZE``; pass it to validate a config for a
    launch that has not started yet.
    """

    def __init__(self, job_config: JobConfig, world_size: int | None = None):
        self.job_config = job_config
        self.spec, self.package_dir = resolve_train_spec(job_config)
        self.model_args = _flavor_args(self.spec, job_config.model)
        try:
            self.model_args.update_from_config(job_config)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        world_size = world_size or world_size_from_env()
        self.parallel_dims = ParallelDims.from_config(job_config.parallelism, world_size)
        self._check_model_fits()
        self.accum_steps = gradient_accumulation_steps(
            job_config.training, self.parallel_dims.dp_degree
        )
        self.global_batch = (
            job_config.training.local_batch_size * self.parallel_dims.dp_degree * self.accum_steps
        )

    def _check_model_fits(self) -> None:
        args = self.model_args
        n_heads = getattr(args, "n_heads", None)
        if n_heads is not None:
            self.parallel_dims.check_model(
                args.n_layers, n_heads, getattr(args, "n_kv_heads", None)
            )
        self.parallel_dims.check_experts(getattr(args, "num_experts", None))
        if (
            hasattr(args, "num_experts")
            and self.parallel_dims.pp_enabled
            and self.job_config.moe.load_balancing == "aux_loss"
        ):
            raise ConfigError(
                "moe.load_balancing aux_loss does not work with pipeline parallelism (the loss "
                "pools the routing of all layers, which pipeline stages split); set "
                "--moe.load_balancing expert_bias or pipeline_parallel_degree 1"
            )
        if self.parallel_dims.pp_enabled and self.spec.pipelining_fn is None:
            raise ConfigError(
                f"parallelism.pipeline_parallel_degree must be 1: model {self.spec.name} has no "
                "pipeline stages (its TrainSpec's pipelining_fn is None; its README says why)"
            )

    # ----- building -------------------------------------------------------------------------

    def _setup(self) -> None:
        self.device = init_distributed()
        self.rank = dist.get_rank()
        self._lock_dump_folder()
        self._quiet_known_warnings()
        self._keep_fp32_on_cpu()
        set_seed(self.job_config.training.seed, self.job_config.training.deterministic)
        flavor = f"{self.spec.name}/{self.job_config.model.flavor}"
        self._phase(f"building {flavor} on the meta device")
        with torch.device("meta"):
            model = self.spec.model_cls(self.model_args)
        seq_len = self.job_config.training.seq_len
        self.n_params, self.flops_per_token = self.model_args.get_nparams_and_flops(model, seq_len)
        self.parallel_dims.build_mesh(self.device.type)
        self.loss_fn = self.spec.build_loss_fn(self.job_config)
        self._phase(f"parallelizing over {self._describe_parallelism()}")
        self._parallelize(model)
        self._use_fused_output_loss()
        self._phase(f"allocating {self.n_params / 1e6:.2f}M parameters on {self.device.type}")
        self._materialize()
        self.optimizers = self.spec.build_optimizers_fn(
            self.model_parts, self.job_config, self.parallel_dims
        )
        self.lr_schedulers = self.spec.build_lr_schedulers_fn(self.optimizers, self.job_config)
        self.balancer = LoadBalancer(
            self.job_config.moe, self.model_parts, self.model_args, self.parallel_dims.dp_mesh
        )
        self._phase(f"data: {self._describe_data()}")
        self._build_data()
        self.train_state = TrainState()
        self.checkpointer = CheckpointManager(self._states(), self.job_config)
        self.resumed_from = self._load_initial_state()
        param_dtype = dtype_from_name(self.job_config.training.mixed_precision_param)
        self._phase("measuring the device's peak FLOP/s (the MFU denominator)")
        self.peak_flops = peak_flops(self.device, param_dtype)
        self.peak_note = ""
        self.metrics = MetricsLogger(self.job_config, is_writer=self.rank == 0)
        self.metrics.start(self.train_state.step, self.resumed_from)

    def _phase(self, message: str) -> None:
        """One console line per setup phase (rank 0), so a long start is never silent."""
        self._say(f"[setup] {message}")

    def _describe_parallelism(self) -> str:
        dims = self.parallel_dims
        parts = [f"{dims.world_size} rank{'s' if dims.world_size > 1 else ''}"]
        for name, degree in (
            ("FSDP", dims.dp_shard),
            ("replicas", dims.dp_replicate),
            ("TP", dims.tp),
            ("PP", dims.pp),
        ):
            if degree > 1:
                parts.append(f"{name} {degree}")
        return ", ".join(parts)

    def _describe_data(self) -> str:
        training = self.job_config.training
        if training.dataset == "mock":
            return "mock tokens (set training.dataset and training.dataset_path for real text)"
        tokenizer = training.tokenizer_path or self.job_config.model.hf_assets_path
        return f"{training.dataset} from {training.dataset_path}, tokenizer {tokenizer}"

    def _quiet_known_warnings(self) -> None:
        """Silence warnings known to be harmless here, and only those.

        DTensor warns on CPU meshes that its random operators and manual_seed may not be fully
        supported: random initialization of sharded weights. With ``training.init = "full"``, an
        initial checkpoint or a resumed one, those values are overwritten before step 1, so the
        warning says nothing about the run. (``init = "local"`` on CPU keeps it.)
        """
        config = self.job_config
        overwritten = (
            config.training.init == "full"
            or bool(config.checkpoint.initial_load_path)
            or self._has_checkpoint()
        )
        if self.device.type == "cpu" and overwritten:
            warnings.filterwarnings(
                "ignore",
                message=r"DTensor (random operators|manual_seed\(\)) may not have complete "
                r"support on cpu device mesh",
            )

    def _has_checkpoint(self) -> bool:
        """Whether a checkpoint to resume exists in the dump folder (the weights come from it)."""
        from runtime.checkpoint import completed_steps

        config = self.job_config
        return bool(completed_steps(Path(config.job.dump_folder) / config.checkpoint.folder))

    def _lock_dump_folder(self) -> None:
        """Refuse to share ``job.dump_folder`` with another training that is running.

        Rank 0 holds an exclusive lock on ``<dump_folder>/.lock`` for the life of its process
        (the kernel drops it however the process ends); every rank learns whether it got it.
        """
        dump = Path(self.job_config.job.dump_folder)
        got = torch.ones(1)
        if self.rank == 0:
            dump.mkdir(parents=True, exist_ok=True)
            self._lock_file = (dump / ".lock").open("a")
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                got.zero_()
        flag = got.to(self.device)
        dist.broadcast(flag, src=0)  # every rank learns rank 0's answer
        if not bool(flag.item()):
            raise ConfigError(
                f"job.dump_folder {dump} is in use by another training (its .lock is held); "
                "wait for it to finish or choose another dump_folder"
            )

    def _keep_fp32_on_cpu(self) -> None:
        training = self.job_config.training
        if self.device.type == "cpu" and training.mixed_precision_param != "float32":
            if dist.get_rank() == 0:
                print("note: CPU run, training in float32 (mixed precision is for GPUs)")
            training.mixed_precision_param = "float32"

    def _scaled_loss(self) -> Callable[..., torch.Tensor]:
        def scaled(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return self._loss(output, labels) / self.accum_steps

        return scaled

    def _loss(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The language-model loss of the last model part's output (hidden states when the
        output projection runs inside the loss)."""
        if self.output_part is not None:
            return fused_output_cross_entropy_loss(self.output_part, output, labels)
        return self.loss_fn(output, labels)

    def _use_fused_output_loss(self) -> None:
        """Let the loss apply the output projection (``training.fused_output_loss``) when the
        last model part can return its hidden states instead of logits."""
        part, training = self.model_parts[-1], self.job_config.training
        self.output_part = None
        output = getattr(part, "output", None)
        if output is None:
            return
        parallelism = self.job_config.parallelism
        if self.parallel_dims.pp_enabled:
            rows = parallelism.pipeline_parallel_microbatch_size
        else:
            rows = training.local_batch_size
        logits = rows * training.seq_len * output.weight.shape[0]
        if wants_fused_output(training.fused_output_loss, part, logits):
            part.skip_output = True
            self.output_part = part

    def _parallelize(self, model: nn.Module) -> None:
        dims, config = self.parallel_dims, self.job_config
        if dims.pp_enabled:
            schedule, parts, first, last = self.spec.pipelining_fn(
                model,
                dims,
                config,
                self.device,
                self.model_args,
                self.spec.parallelize_fn,
                self._scaled_loss(),
            )
            self.schedule, self.model_parts = schedule, parts
            self.has_first_stage, self.has_last_stage = first, last
        else:
            self.schedule = None
            self.model_parts = [self.spec.parallelize_fn(model, dims, config)]
            self.has_first_stage = self.has_last_stage = True

    def _materialize(self) -> None:
        for part in self.model_parts:
            part.to_empty(device=self.device)
            with torch.no_grad():
                part.init_weights(buffer_device=self.device)
            part.train()

    def _init_full_model(self) -> None:
        """Initialize every part from one full CPU model seeded with ``training.seed``.

        The values do not depend on the parallelism, so 1 and N ranks start identically.
        """
        torch.manual_seed(self.job_config.training.seed)
        full = self.spec.model_cls(self.model_args)
        with torch.no_grad():
            full.init_weights(buffer_device=torch.device("cpu"))
        state = full.state_dict()
        options = StateDictOptions(full_state_dict=True, strict=False)
        for part in self.model_parts:
            set_model_state_dict(part, state, options=options)
        del full, state

    def _build_data(self) -> None:
        dims = self.parallel_dims
        tokenizer = None
        if self.spec.build_tokenizer_fn is not None:
            tokenizer = self.spec.build_tokenizer_fn(self.job_config)
        self.dataloader = self.spec.build_dataloader_fn(
            dims.dp_degree,
            dims.dp_rank,
            tokenizer,
            self.job_config,
            vocab_size=getattr(self.model_args, "vocab_size", None),
        )

    def _states(self) -> dict[str, Any]:
        return {
            "model": ModelState(self.model_parts),
            "optimizer": self.optimizers,
            "lr_scheduler": self.lr_schedulers,
            "dataloader": self.dataloader,
            "train_state": self.train_state,
        }

    def _load_initial_state(self) -> int | None:
        """Resume the latest checkpoint, else load initial weights, else seed-initialize."""
        if self.checkpointer.enabled and self.checkpointer.latest_step() is not None:
            self._phase(f"loading the newest checkpoint in {self.checkpointer.folder}")
        step = self.checkpointer.load_latest()
        if step is not None:
            self._say(f"resumed from checkpoint step {step}")
            return step
        config = self.job_config.checkpoint
        if config.initial_load_path:
            kind = "HF" if config.initial_load_in_hf else "DCP"
            self._phase(f"loading {kind} weights from {config.initial_load_path}")
        if config.initial_load_path and config.initial_load_in_hf:
            self._import_hf(Path(config.initial_load_path))
        elif config.initial_load_path:
            self.checkpointer.load_from(config.initial_load_path)
            self._say(f"loaded initial weights from {config.initial_load_path}")
        elif self.job_config.training.init == "full":
            self._phase(f"initializing weights from seed {self.job_config.training.seed}")
            self._init_full_model()
        return None

    def _adapter(self) -> Any:
        if self.spec.state_dict_adapter is None:
            raise ConfigError(f"model {self.spec.name} has no state_dict_adapter for HF weights")
        return self.spec.state_dict_adapter(self.model_args, self.job_config.model.hf_assets_path)

    def _import_hf(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ConfigError(f"checkpoint.initial_load_path not found: {folder}")
        flavor = self.job_config.model.flavor
        import_hf(self.model_parts, self._adapter(), folder, self.model_args, flavor, self._reading)
        self._say(f"loaded HF weights from {folder}")

    def _reading(self, index: int, count: int, file: Path) -> None:
        """Progress through a checkpoint's files: one line each (rank 0)."""
        size = file.stat().st_size / 2**30
        self._phase(f"  reading {file.name} ({index}/{count}, {size:.2f} GiB)")

    def _say(self, message: str) -> None:
        if self.rank == 0:
            print(message, flush=True)

    # ----- training -------------------------------------------------------------------------

    def _forward_backward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One micro-step; returns this rank's (scaled) loss, zero on non-final pp stages."""
        inputs, labels = inputs.to(self.device), labels.to(self.device)
        if self.schedule is None:
            with self._autocast():
                loss = self._loss(self.model_parts[0](inputs), labels) / self.accum_steps
                aux = self.balancer.loss()
            if aux is None:
                loss.backward()
            else:
                aux = aux / self.accum_steps
                (loss + aux).backward()
                self._aux_loss += aux.detach()
            return loss.detach()
        losses: list[torch.Tensor] = []
        target = labels if self.has_last_stage else None
        args = (inputs,) if self.has_first_stage else ()
        with self._autocast():
            self.schedule.step(*args, target=target, losses=losses, return_outputs=False)
        if not self.has_last_stage:
            return torch.zeros((), device=self.device)
        return torch.stack([loss.detach() for loss in losses]).sum()

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision without FSDP (one GPU, or TP/PP only): autocast to the param dtype.

        With FSDP, its MixedPrecisionPolicy casts instead; on CPU training stays fp32.
        """
        dtype = dtype_from_name(self.job_config.training.mixed_precision_param)
        if self.parallel_dims.fsdp_enabled or self.device.type == "cpu" or dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _global_loss(self, local_loss: torch.Tensor) -> float:
        """Average the step loss over ranks that computed it (all ranks, or last pp stages)."""
        total = local_loss.detach().float().clone()
        dist.all_reduce(total)
        holders = dist.get_world_size() // self.parallel_dims.pp
        return float(total) / holders

    def _train_step(self) -> tuple[float, float, float]:
        """One optimizer step; returns ``(global loss, grad norm, learning rate used)``.

        The loss is the language-model loss; a mixture of experts' load-balancing loss (trained
        on too) and load statistics are left in ``self.moe_metrics``.
        """
        lr = self.lr_schedulers.get_last_lr()
        self.optimizers.zero_grad()
        step_loss = torch.zeros((), device=self.device)
        self._aux_loss = torch.zeros((), device=self.device)
        for _ in range(self.accum_steps):
            inputs, labels = self.dataloader.next_batch()
            step_loss += self._forward_backward(inputs, labels)
        params = [p for part in self.model_parts for p in part.parameters()]
        grad_norm = clip_grad_norm_(
            params, self.job_config.training.max_norm, pp_mesh=self.parallel_dims.pp_mesh
        )
        self.moe_metrics = {}
        stats = self.balancer.before_optimizer_step()
        if stats is not None:
            self.moe_metrics["moe_max_over_mean"] = stats.max_over_mean
            if self.job_config.moe.load_balancing == "aux_loss":
                self.moe_metrics["aux_loss"] = self._global_loss(self._aux_loss)
        loss, norm = self._global_loss(step_loss), float(grad_norm)
        if math.isfinite(loss) and math.isfinite(norm):
            self.optimizers.step()
            self.nonfinite_steps = 0
        else:
            # No update from a non-finite loss or gradient: the weights stay as they were.
            self.optimizers.zero_grad()
            self.nonfinite_steps += 1
        self.lr_schedulers.step()
        return loss, norm, lr

    def _step_metrics(self, step: int, loss: float, grad_norm: float, lr: float, seconds: float):
        tokens = self.global_batch * self.job_config.training.seq_len
        tokens_per_sec = tokens / seconds
        world = dist.get_world_size()
        achieved = tokens_per_sec * self.flops_per_token / world  # FLOP/s per device
        measured = self.peak_flops
        mfu, self.peak_flops, raised = mfu_and_peak(achieved, measured)
        if raised:
            self._say(
                f"note: step {step} reached {achieved / 1e9:.1f} GFLOP/s per device, above the "
                f"peak measured at start ({measured / 1e9:.1f}; the device was busy then): MFU "
                "is relative to the higher figure from now on"
            )
        return StepMetrics(
            step=step,
            loss=loss,
            grad_norm=grad_norm,
            lr=lr,
            tokens_per_sec=tokens_per_sec,
            mfu=mfu,
            memory_gib=memory_gib(self.device),
            step_time_s=seconds,
            **self.moe_metrics,
        )

    def train(self) -> TrainResult:
        """Run the job to ``training.steps``; returns losses by step."""
        try:
            self._setup()
            result = TrainResult(resumed_from=self.resumed_from)
            self._announce()
            gc.disable()
            try:
                self._loop(result)
            finally:
                gc.enable()
                self.checkpointer.close()
                self.metrics.close()
            result.final_step = self.train_state.step
            if self.job_config.checkpoint.last_save_in_hf:
                result.hf_folder = self.export_hf()
            self._report_outputs(result)
            return result
        finally:
            lock = getattr(self, "_lock_file", None)
            if lock is not None:
                lock.close()  # releases the dump folder's lock

    def _loop(self, result: TrainResult) -> None:
        training = self.job_config.training
        self.nonfinite_steps = 0
        while self.train_state.step < training.steps:
            step = self.train_state.step + 1
            start = time.perf_counter()
            loss, grad_norm, lr = self._train_step()
            self.train_state.step = step
            final = step == training.steps
            if self.metrics.should_log(step, final) or self.nonfinite_steps:
                seconds = time.perf_counter() - start
                metrics = self._step_metrics(step, loss, grad_norm, lr, seconds)
                self.metrics.log(metrics)
            result.losses[step] = loss
            if self.nonfinite_steps > training.nonfinite_patience:
                raise NonFiniteTraining(
                    f"step {step}: loss {loss} / gradient norm {grad_norm} is not finite "
                    f"({self.nonfinite_steps} step(s) in a row, training.nonfinite_patience "
                    f"{training.nonfinite_patience}); stopped without saving: "
                    f"{self.checkpointer.latest_description()}"
                )
            if self.nonfinite_steps:
                continue  # an update was skipped: nothing new to save
            if self.checkpointer.due(step, final) and not self._weights_finite():
                raise NonFiniteTraining(
                    f"step {step}: the weights are not finite after the update (a learning rate "
                    f"or gradient too large?); stopped without saving: "
                    f"{self.checkpointer.latest_description()}"
                )
            self.checkpointer.maybe_save(step, final=final)
            if step % training.gc_freq == 0:
                gc.collect(1)

    def _weights_finite(self) -> bool:
        """Every rank's shards of every weight are finite (one all-reduce)."""
        finite = all(
            bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all())
            for part in self.model_parts
            for p in part.parameters()
        )
        flag = torch.tensor([1.0 if finite else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def _announce(self) -> None:
        dims = self.parallel_dims
        self._say(
            f"training {self.spec.name}/{self.job_config.model.flavor}: "
            f"{self.n_params / 1e6:.2f}M params, world {dims.world_size} "
            f"(dp_replicate {dims.dp_replicate}, dp_shard {dims.dp_shard}, tp {dims.tp}, "
            f"pp {dims.pp}), global batch {self.global_batch} = local "
            f"{self.job_config.training.local_batch_size} x dp {dims.dp_degree} x accumulation "
            f"{self.accum_steps}, device {self.device.type}"
        )
        if self.job_config.job.print_config:
            self._say(json.dumps(self.job_config.to_dict(), indent=2))

    def _report_outputs(self, result: TrainResult) -> None:
        """The closing block: where every output of the run is (rank 0)."""
        job = self.job_config
        dump = Path(job.job.dump_folder)
        lines = [f"metrics      {self.metrics.jsonl_path}"]
        if job.metrics.enable_tensorboard:
            lines.append(
                f"tensorboard  {dump / job.metrics.save_tb_folder}   "
                f"(tensorboard --logdir {dump / job.metrics.save_tb_folder})"
            )
        latest = self.checkpointer.latest_step() if job.checkpoint.enable else None
        if latest is not None:
            lines.append(f"checkpoint   {self.checkpointer.folder / f'step-{latest}'} (DCP)")
        elif job.checkpoint.enable:
            lines.append(f"checkpoint   none written yet to {self.checkpointer.folder}")
        if result.hf_folder is not None:
            lines.append(f"hf export    {result.hf_folder}   (transformers from_pretrained)")
        self._say(f"done: {result.final_step} steps. Outputs:")
        for line in lines:
            self._say(f"  {line}")

    def export_hf(self) -> Path:
        """Export the current weights as a transformers folder ``<dump_folder>/hf``."""
        out_dir = Path(self.job_config.job.dump_folder) / "hf"
        base_file = self.package_dir / "hf_config.json"
        base = json.loads(base_file.read_text()) if base_file.is_file() else None
        export_hf(
            self.model_parts,
            self._adapter(),
            self.model_args,
            self.parallel_dims,
            out_dir,
            dtype_name=self.job_config.checkpoint.export_dtype,
            base_config=base,
            assets_path=self.job_config.model.hf_assets_path,
        )
        self._say(f"exported HF checkpoint to {out_dir}")
        return out_dir
