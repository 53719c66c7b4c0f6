"""`RewardTrainer`: fit a `CLIPRewardModel` head to preference pairs with the Bradley-Terry loss.

CLIP is frozen, so every image and caption is embedded once; the head then trains on the cached
features (seconds, even for thousands of pairs). Ties train as 0.5 targets. Held-out pairs give the
pairwise accuracy (ties excluded: neither answer is right) and the log-loss (ties included).

The held-out split is evaluated after every epoch and the weights saved are the epoch's with the lowest
held-out log-loss (`BestEpoch`), never simply the last; `early_stopping_patience` epochs without a better
one end training. summary.json names the selected and the last epoch and gives the selected model's
calibration (`canvas.rlhf.reward_calibration`: Brier score, ECE, reliability bins and `reliability.png`).

Checkpoints (every `checkpointing_steps` epochs) hold the model, optimizer, RNG and batch-order state, so
`resume_from_checkpoint` continues a run exactly as `TrainerBase` does for the other trainers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from canvas.rlhf.diffusion_model import image_to_tensor
from canvas.rlhf.preferences import PreferenceData, decode_pair, load_preferences
from canvas.rlhf.reward_calibration import calibration, plot_reliability
from canvas.rlhf.reward_config import RewardConfig
from canvas.rlhf.reward_model import WEIGHTS_FILE, CLIPRewardModel
from canvas.rlhf.trainer_base import TrainerBase

log = logging.getLogger(__name__)

RELIABILITY_FILE = "reliability.png"


def bradley_terry_loss(
    score_preferred: torch.Tensor, score_rejected: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Per-pair loss: cross-entropy of P(preferred wins) = sigmoid(s_w - s_l) against `target`.

    `target` is 1 for a clear preference and 0.5 for a tie.
    """
    return F.binary_cross_entropy_with_logits(score_preferred - score_rejected, target, reduction="none")


def pairwise_accuracy(
    score_preferred: torch.Tensor, score_rejected: torch.Tensor, target: torch.Tensor
) -> float:
    """Share of non-tie pairs where the preferred image scores higher (NaN when all pairs are ties)."""
    strict = target > 0.5
    if not bool(strict.any()):
        return math.nan
    return float((score_preferred[strict] > score_rejected[strict]).float().mean())


class PairFeatures:
    """Cached CLIP features of a set of pairs: preferred, rejected, caption, target, and whether the
    preferred image was shown left (for calibration, which reads pairs as shown)."""

    def __init__(
        self,
        preferred: torch.Tensor,
        rejected: torch.Tensor,
        text: torch.Tensor,
        target: torch.Tensor,
        preferred_is_left: torch.Tensor | None = None,
    ) -> None:
        self.preferred, self.rejected, self.text, self.target = preferred, rejected, text, target
        self.preferred_is_left = (
            torch.ones(len(target), dtype=torch.bool) if preferred_is_left is None else preferred_is_left
        )

    def __len__(self) -> int:
        return len(self.target)


class BestEpoch:
    """The epoch with the lowest held-out log-loss so far, its weights, and the epochs since it."""

    def __init__(self) -> None:
        self.epoch, self.step, self.log_loss, self.accuracy = 0, 0, math.inf, math.nan
        self.state: dict[str, torch.Tensor] = {}
        self.epochs_since = 0

    def update(
        self, epoch: int, step: int, heldout: dict[str, float], model: CLIPRewardModel, threshold: float
    ) -> bool:
        """Record `epoch` if it beats the best by more than `threshold`; True when it did."""
        if heldout["log_loss"] < self.log_loss - threshold:
            self.epoch, self.step, self.log_loss, self.accuracy = (
                epoch,
                step,
                heldout["log_loss"],
                heldout["accuracy"],
            )
            self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.epochs_since = 0
            return True
        self.epochs_since += 1
        return False

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        state = {"best_epoch": self.epoch, "best_step": self.step, "best_log_loss": self.log_loss,
                 "best_accuracy": self.accuracy, "epochs_since_best": self.epochs_since}  # fmt: skip
        return state, {f"best/{k}": v for k, v in self.state.items()}

    def from_checkpoint(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.epoch, self.step = int(state["best_epoch"]), int(state["best_step"])
        self.log_loss, self.accuracy = float(state["best_log_loss"]), float(state["best_accuracy"])
        self.epochs_since = int(state["epochs_since_best"])
        self.state = {k.removeprefix("best/"): v for k, v in tensors.items() if k.startswith("best/")}


def _save_model(model: CLIPRewardModel, folder: Path) -> None:
    model.save_pretrained(folder)


def _load_model(model: CLIPRewardModel, folder: Path) -> None:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))


class RewardTrainer(TrainerBase):
    """Example:
    >>> RewardTrainer(RewardConfig(preferences="prefs.parquet", output_dir="rm")).train()
    >>> reward = CLIPRewardModel.from_pretrained("rm")      # or canvas.rlhf.rewards.load_reward("rm")
    """

    def __init__(self, config: RewardConfig) -> None:
        self.config = config
        # -- data: validated up front so that a bad row fails before any model loads ----------------------
        data = load_preferences(config.preferences, split=config.split)
        self.train_data, self.heldout_data = data.split(config.heldout_fraction, config.seed)
        if len(self.train_data) == 0 or len(self.heldout_data) == 0:
            raise_few(len(data))
        # -- the folder: a previous run's files are refused (or cleared with overwrite_output_dir) -------
        self._claim_output_dir()
        # -- model ----------------------------------------------------------------------------------------
        torch.manual_seed(config.seed)
        self.model = CLIPRewardModel(config.clip_model, config.clip_pretrained, config.hidden_dim)
        self.model.clip.to(config.device)
        self.model.to(config.device)

    def embed(self, data: PreferenceData, desc: str) -> PairFeatures:
        """CLIP features for every pair (decoding each image once)."""
        size = self.model.clip.visual.preprocess_cfg["size"]
        size = size if isinstance(size, int) else size[0]
        batch = self.config.embed_batch_size
        preferred, rejected, text, target, left = [], [], [], [], []
        for start in tqdm(range(0, len(data), batch), desc=desc, unit="batch", leave=False):
            pairs = [data[i] for i in range(start, min(start + batch, len(data)))]
            images = [decode_pair(data, p) for p in pairs]
            win = torch.stack([image_to_tensor(w, size) for w, _ in images]).to(self.config.device)
            lose = torch.stack([image_to_tensor(lo, size) for _, lo in images]).to(self.config.device)
            preferred.append(self.model.image_features(win).cpu())
            rejected.append(self.model.image_features(lose).cpu())
            text.append(self.model.text_features([p.caption for p in pairs]).cpu())
            target.append(torch.tensor([p.target for p in pairs], dtype=torch.float32))
            left.append(torch.tensor([p.preferred_is_left for p in pairs], dtype=torch.bool))
        return PairFeatures(*(torch.cat(t) for t in (preferred, rejected, text, target, left)))

    def _scores(self, f: PairFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.config.device
        return (
            self.model.score_features(f.preferred.to(dev), f.text.to(dev)),
            self.model.score_features(f.rejected.to(dev), f.text.to(dev)),
        )

    @torch.no_grad()
    def evaluate(self, f: PairFeatures) -> dict[str, float]:
        self.model.eval()
        s_w, s_l = self._scores(f)
        target = f.target.to(s_w.device)
        return {
            "accuracy": pairwise_accuracy(s_w, s_l, target),
            "log_loss": float(bradley_terry_loss(s_w, s_l, target).mean()),
        }

    @torch.no_grad()
    def calibrate(self, f: PairFeatures) -> dict[str, Any]:
        """`canvas.rlhf.reward_calibration.calibration` of the pairs as shown (P(left wins))."""
        self.model.eval()
        s_w, s_l = (s.cpu() for s in self._scores(f))
        left = f.preferred_is_left
        return calibration(torch.where(left, s_w - s_l, s_l - s_w), torch.where(left, f.target, 1 - f.target))

    def train(self) -> dict[str, Any]:
        cfg = self.config
        train_f = self.embed(self.train_data, "embedding train pairs")
        heldout_f = self.embed(self.heldout_data, "embedding held-out pairs")
        self.model.set_feature_stats(
            torch.cat([train_f.preferred, train_f.rejected]).to(cfg.device),
            torch.cat([train_f.text, train_f.text]).to(cfg.device),
        )
        optimizer = torch.optim.AdamW(
            self.model.head.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        order_gen = torch.Generator().manual_seed(cfg.seed)
        start_epoch, step, best, last = 0, 0, BestEpoch(), None
        resumed = self._resume(self.model, optimizer, _load_model)
        if resumed is not None:
            state, tensors = resumed
            start_epoch, step = int(state["step"]), int(state["optimizer_steps"])
            order_gen.set_state(tensors["order_gen"])
            best.from_checkpoint(state, tensors)
            log.info("resumed from %s (epoch %d)", self.resume_checkpoint, start_epoch)
        logger = self._open_logger(step if resumed is not None else None)
        if start_epoch >= cfg.num_epochs or _patience_spent(best, cfg):  # resumed at the end
            last = {"epoch": start_epoch, "step": step, **self.evaluate(heldout_f)}
        epochs = range(start_epoch + 1, cfg.num_epochs + 1)
        for epoch in tqdm(
            epochs, desc="reward epochs", unit="epoch", initial=start_epoch, total=cfg.num_epochs
        ):
            if _patience_spent(best, cfg):
                break
            self.model.train()
            losses = []
            for idx in torch.randperm(len(train_f), generator=order_gen).split(cfg.batch_size):
                batch = PairFeatures(
                    train_f.preferred[idx], train_f.rejected[idx], train_f.text[idx], train_f.target[idx]
                )
                s_w, s_l = self._scores(batch)
                loss = bradley_terry_loss(s_w, s_l, batch.target.to(s_w.device)).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.detach().item())
                step += 1
            train_metrics = self.evaluate(train_f)
            heldout = self.evaluate(heldout_f)
            last = {"epoch": epoch, "step": step, **heldout}
            improved = best.update(epoch, step, heldout, self.model, cfg.early_stopping_threshold)
            logger.log(
                step,
                {
                    "epoch": epoch,
                    "loss": sum(losses) / len(losses),
                    "train/accuracy": train_metrics["accuracy"],
                    "heldout/accuracy": heldout["accuracy"],
                    "heldout/log_loss": heldout["log_loss"],
                    "heldout/best_log_loss": best.log_loss,
                    "heldout/is_best": improved,
                },
            )
            if cfg.checkpointing_steps and epoch % cfg.checkpointing_steps == 0 and epoch < cfg.num_epochs:
                best_state, best_tensors = best.to_checkpoint()
                self._save_checkpoint(
                    epoch, self.model, optimizer, extra_state={"optimizer_steps": step, **best_state},
                    tensors={"order_gen": order_gen.get_state(), **best_tensors}, save_model=_save_model,
                )  # fmt: skip
        stopped_early = last["epoch"] < cfg.num_epochs
        if stopped_early:
            log.info(
                "early stop after epoch %d: no better held-out log-loss since epoch %d",
                last["epoch"],
                best.epoch,
            )
        # -- the saved model is the best epoch's (load_best_model_at_end), never simply the last ----------
        if best.state:  # empty only if no epoch ever had a finite held-out log-loss: keep the last
            self.model.load_state_dict(best.state)
        else:
            best.epoch, best.step = last["epoch"], last["step"]
        self.model.save_pretrained(self.output_dir)
        selected, train_metrics = self.evaluate(heldout_f), self.evaluate(train_f)
        calib = self.calibrate(heldout_f)
        plot_reliability(calib["bins"], self.output_dir / RELIABILITY_FILE)
        summary = {
            "heldout_accuracy": selected["accuracy"],
            "heldout_log_loss": selected["log_loss"],
            "heldout_brier": calib["brier"],
            "heldout_ece": calib["ece"],
            "ece_bins": len(calib["bins"]),
            "reliability": calib["bins"],
            "train_accuracy": train_metrics["accuracy"],
            "selected_epoch": best.epoch,
            "selected_step": best.step,
            "last_epoch": last["epoch"],
            "last_step": last["step"],
            "last_heldout_accuracy": last["accuracy"],
            "last_heldout_log_loss": last["log_loss"],
            "stopped_early": stopped_early,
            "train_pairs": len(self.train_data),
            "heldout_pairs": len(self.heldout_data),
            "train_ties": self.train_data.num_ties,
            "heldout_ties": self.heldout_data.num_ties,
            "steps": step,
            "model_dir": str(self.output_dir),
            "config": asdict(cfg),
        }
        logger.write_summary(summary)
        logger.close()
        log.info(
            "epoch %d selected (of %d): held-out accuracy %.3f, log-loss %.3f, ECE %.3f (last epoch: %.3f, %.3f)",
            best.epoch, last["epoch"], selected["accuracy"], selected["log_loss"], calib["ece"],
            last["accuracy"], last["log_loss"],
        )  # fmt: skip
        return summary


def _patience_spent(best: BestEpoch, cfg: RewardConfig) -> bool:
    return bool(cfg.early_stopping_patience) and best.epochs_since >= cfg.early_stopping_patience


def raise_few(n: int) -> None:
    from canvas.core.errors import CanvasError

    raise CanvasError(
        f"{n} preference pairs are too few to hold some out: add pairs or change heldout_fraction"
    )
