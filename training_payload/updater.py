"""Training and evaluation of a shared base with K heads: one base forward, one backward.

The summed loss gives the base the same gradient as K separate backwards (backprop is linear),
at about one backward's cost. Calling `cleargrads()` between per-head backwards is the classic
silent bug: the base then only learns from the last head. `backward_per_head` is the slow
reference the tests and the benchmark compare against.
"""

import chainer
import chainer.functions as F
from chainer import training
from chainer.dataset import convert
from chainer.training import extensions


def head_losses(base, heads: dict, x, labels) -> dict:
    """`{head: (loss, accuracy)}` with the base computed once for all heads."""
    features = base(x)
    results = {}
    for (name, head), t in zip(heads.items(), labels):
        y = head(features)
        results[name] = (F.softmax_cross_entropy(y, t), F.accuracy(y, t))
    return results


def report_head_metrics(heads: dict, results: dict) -> None:
    """Report as `<head>/loss`, `<head>/accuracy` (the head link is the observer)."""
    for name, (loss, accuracy) in results.items():
        chainer.report({"loss": loss, "accuracy": accuracy}, heads[name])


def weighted_total(results: dict, weights: dict):
    return sum(weights[name] * loss for name, (loss, _) in results.items())


class MultiHeadUpdater(training.updaters.StandardUpdater):
    """Updates the base and every head from one backward over the weighted sum of head losses.

    `optimizers` holds one optimizer per link: `"base"` for the base, the head name for each head.
    Passing them all to `StandardUpdater` is what makes snapshots save every optimizer's state,
    and the Trainer register every link as a reporter observer (`<head>/loss`) and as a target
    of `FailOnNonNumber`.
    """

    def __init__(
        self,
        iterator,
        base,
        heads: dict,
        optimizers: dict,
        loss_weights: dict = None,
        converter=convert.concat_examples,
        device=None,
    ):
        self.base = base
        self.heads = dict(heads)
        check_optimizers(base, self.heads, optimizers)
        self.loss_weights = {name: float((loss_weights or {}).get(name, 1.0)) for name in heads}
        super().__init__(iterator, optimizers, converter=converter, device=device)

    def update_core(self):
        iterator = self.get_iterator("main")
        x, *labels = self.converter(iterator.next(), self.input_device)
        optimizers = self.get_all_optimizers().values()
        for optimizer in optimizers:
            optimizer.target.cleargrads()
        results = head_losses(self.base, self.heads, x, labels)
        report_head_metrics(self.heads, results)
        total = weighted_total(results, self.loss_weights)
        chainer.report({"loss": total})
        total.backward()
        for optimizer in optimizers:
            optimizer.update()
            if self.auto_new_epoch and iterator.is_new_epoch:
                optimizer.new_epoch(auto=True)


def check_optimizers(base, heads: dict, optimizers: dict) -> None:
    expected = {"base": base, **heads}
    if set(optimizers) != set(expected):
        raise ValueError(
            f"optimizers must be keyed {sorted(expected)} (one per link: 'base' and "
            f"each head), got {sorted(optimizers)}"
        )
    for name, link in expected.items():
        if optimizers[name].target is not link:
            raise ValueError(
                f"optimizers[{name!r}] is set up on another link; call optimizer.setup() with the {name!r} link"
            )


def backward_per_head(base, heads: dict, x, labels, weights: dict) -> None:
    """One base forward, then K backwards through it, accumulating (no cleargrads between)."""
    features = base(x)
    for (name, head), t in zip(heads.items(), labels):
        (weights[name] * F.softmax_cross_entropy(head(features), t)).backward()


class MultiHeadEvaluator(extensions.Evaluator):
    """Reports `validation/<head>/loss` and `validation/<head>/accuracy` for every head."""

    def __init__(self, iterator, base, heads: dict, converter=convert.concat_examples, device=None):
        self.base = base
        self.heads = dict(heads)
        super().__init__(
            iterator, {"base": base, **self.heads}, converter=converter, device=device, eval_func=self._evaluate_batch
        )

    def _evaluate_batch(self, x, *labels):
        report_head_metrics(self.heads, head_losses(self.base, self.heads, x, labels))
