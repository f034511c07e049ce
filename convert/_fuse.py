"""Residual sums rewired so that each ReLU after one fuses into an ADD (int8 speed).

Keras Xception's middle flow (keras/applications/xception.py) is, per block,

    residual = x
    x = ReLU(x) -> SeparableConv2D ... -> BatchNormalization
    x = add([x, residual])

so each residual sum feeds two layers: the next block's ReLU and its residual
`add`. The TFLite converter fuses an activation into the op before it only when
that op has no other reader, so every such ReLU stays a RELU op of its own. In an
int8 model XNNPACK does not take those RELUs: each one splits the delegated graph
and runs on TFLite's reference kernel (`python -m bench.profile`: the 11 RELUs
took 44% of int8's time, README "Closer to the machine's limit").

The rewiring keeps each sum as two tensors, x = partial + last, and never forms
x itself where no layer needs it:

- the next ReLU reads ReLU(Add([partial, last])): an ADD whose only reader is
  the ReLU, so the converter fuses the two;
- the next residual add of `y` gives partial' = Add([y, partial]), `last` unchanged;
- where a layer needs x itself (block 13's 1x1 residual convolution), x is formed
  as Add([Add([y, last]), partial]), a grouping no ReLU path uses, so the
  converter does not merge it with the ReLU's ADD (identical ADDs are merged, and
  the ReLU would stand alone again).

The function is unchanged up to float rounding (sums regrouped). Each partial sum
gets its own int8 range. `QuantRecipe.fuse_relus` turns it on for int8
(README "ReLUs fused into the residual ADDs").
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def is_relu(layer: Any) -> bool:
    """True for a plain ReLU layer: `Activation("relu")` or `ReLU()` with default arguments."""
    import keras

    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return (
            config.get("max_value") is None
            and not config.get("negative_slope")
            and not config.get("threshold")
        )
    return isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "relu"


def _is_two_input_add(layer: Any, inputs: Any) -> bool:
    import keras

    return (
        isinstance(layer, keras.layers.Add)
        and isinstance(inputs, list | tuple)
        and len(inputs) == 2
    )


def _graph_nodes(model: Any) -> list[Any]:
    """The call nodes of `model`'s own graph. Not `layer._inbound_nodes`: a layer
    shared with another graph (a model rewired before) has that graph's nodes too."""
    return [node for nodes in model._nodes_by_depth.values() for node in nodes]


def _sums_to_split(model: Any) -> dict[str, tuple[str, bool]]:
    """The two-input Add layers whose sum one ReLU reads: name -> (that ReLU's name,
    whether layers other than two-input Adds read the sum too, so that it must also
    be formed whole).
    """
    import keras

    readers: dict[int, list[tuple[Any, int]]] = defaultdict(list)  # id(tensor) -> (layer, n_in)
    calls: dict[int, list[Any]] = defaultdict(list)
    for node in _graph_nodes(model):
        calls[id(node.operation)].append(node)
        for tensor in node.input_tensors:
            readers[id(tensor)].append((node.operation, len(node.input_tensors)))
    outputs = {id(t) for t in model.outputs}
    found: dict[str, tuple[str, bool]] = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Add) or len(calls[id(layer)]) != 1:
            continue  # an Add called twice in the graph is left alone
        (node,) = calls[id(layer)]
        out = node.output_tensors[0]
        relus = [r for r, _ in readers[id(out)] if is_relu(r)]
        if len(node.input_tensors) != 2 or len(relus) != 1 or id(out) in outputs:
            continue
        others = [(r, n) for r, n in readers[id(out)] if not is_relu(r)]
        whole = not all(isinstance(r, keras.layers.Add) and n == 2 for r, n in others)
        found[layer.name] = (relus[0].name, whole)
    return found


def fused_relus(model: Any) -> Any:
    """A model computing the same function as `model`, its residual sums rewired
    so that each ReLU reading one fuses into an ADD when converted to TFLite.

    The new model shares `model`'s layers (and so its weights); `model` itself is
    not changed. Nested functional models (our base) are rewired too. A model
    that is not functional (`keras.Sequential`: a chain, no residual sum) comes
    back as it is.

    Which block an op belongs to (`convert._quantize.block_of`, for the blocks a
    recipe keeps float) follows the new names: the ADDs that now form a sum for
    a ReLU are named after that ReLU ("block5_sepconv1_act_sum"), and block 13's
    whole sum after block 13's ReLU ("block13_sepconv1_act_whole"), so a sum is
    formed in the block that reads it, not the block that closes it.

    Args:
        model: a Keras model (an Xception base, or base + head).

    Returns:
        keras.Model with the same inputs, outputs and weights.
    """
    import keras

    if not hasattr(model, "_nodes_by_depth"):  # Sequential: nothing to rewire
        return model
    inner = {
        id(layer): fused_relus(layer) for layer in model.layers if isinstance(layer, keras.Model)
    }
    return _rewired(model, inner)


def _rewired(model: Any, inner: dict[int, Any]) -> Any:
    import keras

    sums = _sums_to_split(model)
    pairs: dict[int, tuple[Any, Any]] = {}  # id(tensor handed on) -> (partial, last)
    held = []  # the tensors keyed in `pairs`, kept alive so that their ids stay unique

    formed: set[int] = set()  # ids of held tensors that are the whole sum already

    def whole(tensor: Any) -> Any:
        """`tensor` itself, or the sum it stands for when it is held as a partial sum."""
        if id(tensor) not in pairs or id(tensor) in formed:
            return tensor
        return keras.layers.Add()(list(pairs[id(tensor)]))

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        inputs: Any = args[0] if args else kwargs.get("inputs")
        if is_relu(layer) and args and id(inputs) in pairs:
            partial, last = pairs[id(inputs)]
            return layer(keras.layers.Add(name=f"{layer.name}_sum")([partial, last]), **kwargs)
        if not (args and _is_two_input_add(layer, inputs)):
            # Any other reader of a held sum gets the sum itself (not in Xception).
            args, kwargs = keras.tree.map_structure(whole, (args, kwargs))
            return layer(*args, **kwargs)
        a, b = inputs
        if id(b) in pairs and id(a) not in pairs:
            a, b = b, a  # a: the input held as a pair, if either is
        b = whole(b)  # both held: form b (not in Xception)
        if id(a) not in pairs:
            if layer.name not in sums or sums[layer.name][1]:
                # Formed whole anyway: a second ADD for the ReLU would be merged with it.
                return layer([a, b], *args[1:], **kwargs)
            token = layer([a, b])  # the sum, never part of the model unless `whole` reads it
            pairs[id(token)] = (a, b)
            formed.add(id(token))
        else:
            partial, last = pairs[id(a)]
            pair = (layer([b, partial]), last)
            if layer.name not in sums:
                return keras.layers.Add(name=f"{layer.name}_whole")(list(pair))
            relu, is_read_whole = sums[layer.name]
            token = pair[0]
            if is_read_whole:  # other layers read the sum: formed in a grouping no ReLU uses
                first = keras.layers.Add(name=f"{relu}_whole_part")([b, last])
                token = keras.layers.Add(name=f"{relu}_whole")([first, partial])
                formed.add(id(token))
            pairs[id(token)] = pair
        held.append(token)
        return token

    return keras.models.clone_model(
        model, clone_function=lambda layer: inner.get(id(layer), layer), call_function=call
    )
