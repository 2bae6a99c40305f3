"""The multi-head updater and evaluator: one backward, every optimizer registered, per-head reports."""

import chainer
import numpy as np
import pytest
from chainer import training
from chainer.training import extensions

from training_payload.model import ConvBase, build_heads
from training_payload.updater import (
    MultiHeadEvaluator,
    MultiHeadUpdater,
    backward_per_head,
    head_losses,
    weighted_total,
)

CLASSES = {"shape": 3, "colour": 3, "size": 2, "position": 4}
WEIGHTS = {"shape": 1.0, "colour": 0.5, "size": 2.0, "position": 1.0}


@pytest.fixture
def net():
    np.random.seed(0)
    return ConvBase(image_size=16, width=4, features=16), build_heads(CLASSES, features=16)


def batch(size=8, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.rand(size, 3, 16, 16).astype(np.float32)
    labels = [rng.randint(0, n, size).astype(np.int32) for n in CLASSES.values()]
    return x, labels


def examples(size=8, seed=0):
    x, labels = batch(size, seed)
    return [(x[i], *(t[i] for t in labels)) for i in range(size)]


def clear(base, heads):
    for link in (base, *heads.values()):
        link.cleargrads()


def base_grads(base):
    return {name: param.grad.copy() for name, param in base.namedparams()}


def grads_of_one_head(base, heads, name, x, labels):
    clear(base, heads)
    index = list(heads).index(name)
    backward_per_head(base, {name: heads[name]}, x, [labels[index]], WEIGHTS)
    return base_grads(base)


def make_updater(base, heads, weights=WEIGHTS, size=8):
    iterator = chainer.iterators.SerialIterator(examples(size), size, shuffle=False)
    optimizers = {name: chainer.optimizers.Adam().setup(link) for name, link in {"base": base, **heads}.items()}
    return MultiHeadUpdater(iterator, base, heads, optimizers, weights)


def test_given_k_heads_when_one_summed_backward_then_gradients_equal_per_head_backwards(net):
    base, heads = net
    x, labels = batch()

    clear(base, heads)
    weighted_total(head_losses(base, heads, x, labels), WEIGHTS).backward()
    summed = base_grads(base)
    clear(base, heads)
    backward_per_head(base, heads, x, labels, WEIGHTS)
    per_head = base_grads(base)

    for name in summed:
        np.testing.assert_allclose(summed[name], per_head[name], rtol=1e-5, atol=1e-7)


def test_given_an_update_then_base_learns_from_every_head_not_only_the_last(net):
    """Regression: cleargrads() between per-head backwards leaves only the last head's gradient."""
    base, heads = net
    x, labels = batch()
    contributions = {name: grads_of_one_head(base, heads, name, x, labels) for name in heads}
    updater = make_updater(base, heads)

    updater.update()

    last_head_only = contributions[list(heads)[-1]]
    for name, grad in base_grads(base).items():
        expected = sum(contribution[name] for contribution in contributions.values())
        np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
        assert not np.allclose(grad, last_head_only[name], rtol=1e-3, atol=1e-6), name


def test_given_a_zero_loss_weight_when_updating_then_that_head_leaves_the_base_untouched(net):
    base, heads = net
    x, labels = batch()
    weights = dict(WEIGHTS, shape=0.0)
    others = {name: grads_of_one_head(base, heads, name, x, labels) for name in heads if name != "shape"}
    updater = make_updater(base, heads, weights)

    updater.update()

    for name, grad in base_grads(base).items():
        np.testing.assert_allclose(grad, sum(o[name] for o in others.values()), rtol=1e-5, atol=1e-7)


def test_given_the_updater_then_every_link_has_its_optimizer_in_snapshots(net, tmp_path):
    base, heads = net
    updater = make_updater(base, heads)
    updater.update()

    chainer.serializers.save_npz(str(tmp_path / "updater.npz"), updater)
    keys = set(np.load(str(tmp_path / "updater.npz")).files)

    assert set(updater.get_all_optimizers()) == {"base", *heads}
    for name in ("base", *heads):
        assert any(key.startswith(f"optimizer:{name}/") for key in keys), name


def test_given_mismatched_optimizers_when_building_then_error_names_the_expected_keys(net):
    base, heads = net
    iterator = chainer.iterators.SerialIterator(examples(), 8)
    optimizers = {"base": chainer.optimizers.Adam().setup(base)}

    with pytest.raises(ValueError, match=r"optimizers must be keyed \['base', 'colour'"):
        MultiHeadUpdater(iterator, base, heads, optimizers)


def run_one_iteration(base, heads, tmp_path, extra=()):
    trainer = training.Trainer(make_updater(base, heads), (1, "iteration"), out=str(tmp_path))
    observations = []
    trainer.extend(lambda t: observations.append(dict(t.observation)), trigger=(1, "iteration"))
    for extension in extra:
        trainer.extend(extension)
    trainer.run(show_loop_exception_msg=False)
    return observations[-1]


def test_given_training_then_loss_and_accuracy_are_reported_per_head(net, tmp_path):
    base, heads = net

    observation = run_one_iteration(base, heads, tmp_path)

    for name in heads:
        assert np.isfinite(float(chainer.as_array(observation[f"{name}/loss"])))
        assert 0.0 <= float(chainer.as_array(observation[f"{name}/accuracy"])) <= 1.0
    assert "loss" in observation


def test_given_a_nan_in_a_head_when_training_then_fail_on_non_number_stops_it(net, tmp_path):
    base, heads = net
    heads["size"].W.array[0, 0] = np.nan

    with pytest.raises(RuntimeError, match="Kill the process since parameters"):
        run_one_iteration(base, heads, tmp_path, extra=[extensions.FailOnNonNumber()])


def test_given_the_evaluator_then_validation_accuracy_is_reported_per_head(net):
    base, heads = net
    iterator = chainer.iterators.SerialIterator(examples(12), 12, repeat=False, shuffle=False)
    evaluator = MultiHeadEvaluator(iterator, base, heads)
    evaluator.name = "validation"

    result = evaluator()

    assert {f"validation/{name}/{metric}" for name in heads for metric in ("loss", "accuracy")} <= set(result)
    x, labels = batch(12)
    with chainer.using_config("train", False):
        expected = head_losses(base, heads, x, labels)
    for name, (loss, accuracy) in expected.items():
        assert float(result[f"validation/{name}/accuracy"]) == pytest.approx(float(accuracy.array))
        assert float(result[f"validation/{name}/loss"]) == pytest.approx(float(loss.array))
