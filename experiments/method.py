"""What a training method is to the engine: a module around the classifier that returns one step's loss and the
figures to log, with its own command-line options, built from explicit keyword arguments."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import datasets
from experiments import data, options
from experiments.argtypes import positive_int
from experiments.bn_modes import BN_MODES, apply_bn_mode
from experiments.classifier import Classifier
from experiments.models import build_backbone
from experiments.textlog import LOG

if TYPE_CHECKING:
    from experiments.engine import Trainer


class Options(Protocol):
    """Where a method adds its options: an argparse parser or argument group."""

    def add_argument(self, *names: str, **settings: Any) -> argparse.Action: ...


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Top-1 accuracy in percent."""
    return (logits.argmax(1) == labels).float().mean() * 100


class Method(nn.Module):
    """A training objective. `forward(x_s, y_s, x_t)` returns the loss to minimise and named figures, each logged
    as train/<name>.

    Subclasses set `name` and `adapts` (trains on unlabeled target batches too, which the engine then passes as
    x_t); they may add options (`add_arguments`; each option's value reaches `build` as a keyword argument of the
    same name) and change the defaults of shared ones (`defaults`, e.g. their learning rate).
    """

    name: ClassVar[str]
    adapts: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    trainer: ClassVar[type[Trainer] | None] = None  # the engine's Trainer, or a subclass with its own evaluation
    dataset_names: ClassVar[tuple[str, ...]] = datasets.NAMES  # what -d accepts
    dataset_type: ClassVar[Callable[[str], str]] = staticmethod(options.dataset_name)  # argparse type of -d
    bn_modes: ClassVar[tuple[str, ...]] = BN_MODES  # what --bn-mode accepts
    backbone_lr_scale: ClassVar[float] = 0.1  # the pretrained backbone's lr factor (1 with --scratch)

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier

    @classmethod
    def add_arguments(cls, parser: Options) -> None:
        """Options of this method only; the engine's parser has the shared ones."""

    @classmethod
    def check_args(cls, parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
        """Check the parsed options that depend on each other (parser.error stops), fill in derived defaults."""
        options.check_task(parser, cls, args)

    @classmethod
    def task_name(cls, args: argparse.Namespace) -> str:
        """The task as reports name it."""
        return options.task_name(args)

    @classmethod
    def build_data(cls, config: dict, start_step: int, rank: int, world_size: int) -> data.TaskData:
        """The run's data, its training streams starting at iteration `start_step`."""
        return data.build(config, cls.adapts, start_step, rank, world_size)

    @classmethod
    def from_config(cls, config: dict, num_classes: int, verbose: bool) -> Method:
        """Backbone in --bn-mode (tune's report shown when `verbose`), and the method built from its own options."""
        backbone, backbone_dim = build_backbone(config["arch"], config["pretrained"], config["scratch"])
        report = apply_bn_mode(backbone, config["bn_mode"])
        if report is not None and verbose:
            LOG.info(str(report))
        own = {name: config[name] for name in options.method_options(cls)}
        return cls.build(backbone, backbone_dim, num_classes, **own)

    @property
    def backbone(self) -> nn.Module:
        """The pretrained part, trained at backbone_lr_scale x lr."""
        return self.classifier.backbone

    @classmethod
    def build(cls, backbone: nn.Module, backbone_dim: int, num_classes: int, **options: Any) -> Method:
        """The method with its classifier (head straight on the backbone's features) and its options."""
        return cls(Classifier(backbone, backbone_dim, num_classes), **options)

    def forward(self, x_s: Tensor, y_s: Tensor, x_t: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


class AdversarialMethod(Method):
    """The step DANN and CDAN share: one forward of source and target together, source cross-entropy plus
    trade_off x the transfer loss of the subclass, which sees the features and logits of both halves. The
    classifier has the protocol's bottleneck (Linear-BN-ReLU) before the head."""

    adapts = True

    def __init__(self, classifier: Classifier, trade_off: float = 1.0) -> None:
        super().__init__(classifier)
        self.trade_off = trade_off

    @classmethod
    def add_arguments(cls, parser: Options) -> None:
        parser.add_argument("--bottleneck-dim", type=positive_int, default=256,
                            help="size of the bottleneck features the adversary aligns")
        parser.add_argument("--trade-off", type=float, default=1.0, help="weight of the transfer loss")

    @classmethod
    def build(cls, backbone: nn.Module, backbone_dim: int, num_classes: int, bottleneck_dim: int = 256,
              **options: Any) -> AdversarialMethod:
        return cls(Classifier(backbone, backbone_dim, num_classes, bottleneck_dim), **options)

    def transfer_loss(self, features: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        """The adversarial loss and the domain discriminator's accuracy (percent)."""
        raise NotImplementedError

    def forward(self, x_s: Tensor, y_s: Tensor, x_t: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        logits, features = self.classifier(torch.cat([x_s, x_t]))
        source_logits = logits[: len(x_s)]
        cls_loss = F.cross_entropy(source_logits, y_s)
        transfer_loss, domain_acc = self.transfer_loss(features, logits)
        figures = {
            "cls_loss": cls_loss,
            "transfer_loss": transfer_loss,
            "source_acc": accuracy(source_logits, y_s),
            "domain_acc": domain_acc,
        }
        return cls_loss + self.trade_off * transfer_loss, figures
