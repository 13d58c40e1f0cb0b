"""A stack of Dense layers: the building block of towers, experts and bottoms."""
from __future__ import annotations

from typing import Sequence

import tf_keras as keras

from trainer import initializers


@keras.utils.register_keras_serializable(package="rankpipe")
class DNN(keras.layers.Layer):
    """Dense -> activation -> dropout, repeated; named like DeepCTR's ``dnn_hidden_units``."""

    def __init__(self, hidden_units: Sequence[int] = (128, 64), activation: str = "relu",
                 dropout: float = 0.0, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation
        self.dropout = float(dropout)
        self.l2 = float(l2)
        reg = keras.regularizers.l2(self.l2) if self.l2 else None
        self._dense = [keras.layers.Dense(u, activation=activation, kernel_regularizer=reg,
                                          kernel_initializer=initializers.dense(), name=f"dense_{i}")
                       for i, u in enumerate(self.hidden_units)]
        self._dropout = [keras.layers.Dropout(self.dropout) for _ in self.hidden_units] if self.dropout else []

    def call(self, inputs, training=None):
        x = inputs
        for i, dense in enumerate(self._dense):
            x = dense(x)
            if self._dropout:
                x = self._dropout[i](x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.hidden_units[-1] if self.hidden_units else input_shape[-1],)

    def get_config(self):
        return dict(super().get_config(), hidden_units=self.hidden_units, activation=self.activation,
                    dropout=self.dropout, l2=self.l2)
