"""A shared convolutional base and one Linear head per label column."""

import chainer
import chainer.functions as F
import chainer.links as L


class ConvBase(chainer.Chain):
    """Three stride-2 convolutions then a dense feature layer.

    Strided convolutions rather than max pooling: on a CPU (the emulator's demo) pooling costs
    as much as the convolutions. The flattened spatial map (no global pooling) is kept because
    heads such as `position` need to know where things are, not only what they are.
    """

    def __init__(self, image_size: int = 32, width: int = 16, features: int = 64):
        super().__init__()
        # Sizes are explicit so every parameter exists before a snapshot is loaded into it.
        side = -(-image_size // 8)  # three stride-2 convolutions with padding: ceil(size / 8)
        with self.init_scope():
            self.conv1 = L.Convolution2D(3, width, ksize=3, stride=2, pad=1)
            self.conv2 = L.Convolution2D(width, 2 * width, ksize=3, stride=2, pad=1)
            self.conv3 = L.Convolution2D(2 * width, 2 * width, ksize=3, stride=2, pad=1)
            self.fc = L.Linear(2 * width * side * side, features)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        h = F.relu(self.conv3(h))
        return F.relu(self.fc(h))


def build_heads(class_counts: dict, features: int = 64) -> dict:
    """One Linear per head, sized from the dataset: `{head: L.Linear(features, n_classes)}`."""
    return {head: L.Linear(features, n_classes) for head, n_classes in class_counts.items()}


class MultiHeadNet(chainer.Chain):
    """The base and every head under one parent, so the final model is one npz.

    Training keeps them as separate links with separate optimizers (see updater.py); this parent
    only names them for saving and loading (`base/...`, `heads/<head>/...`).
    """

    def __init__(self, base: ConvBase, heads: dict):
        super().__init__()
        with self.init_scope():
            self.base = base
            self.heads = chainer.Chain()
        with self.heads.init_scope():
            for name, head in heads.items():
                setattr(self.heads, name, head)
        self.head_names = list(heads)

    def forward(self, x):
        features = self.base(x)
        return {name: self.heads[name](features) for name in self.head_names}
