"""Test helper: tiny NVIDIA-format StyleGAN2 snapshots, written and evaluated without NVIDIA's code.

`make_net` draws a seeded random network as plain tensors named like stylegan2-ada-pytorch's modules;
`write_snapshot` pickles it the way their training loop does (persistent classes reduced to
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with module source + nn.Module state, parameters
as torch Parameters, gains as numpy float64, options as dnnlib EasyDicts); `nv_forward` evaluates it with
StyleGAN2-ADA's equations, written here independently of models/stylegan2.py.
"""

from __future__ import annotations

import math
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

FILTER = [1, 3, 3, 1]
SOURCE = "# stand-in for training/networks.py; a real snapshot stores the module's whole source here\n"


def setup_filter(taps=FILTER) -> torch.Tensor:
    f = torch.tensor(taps, dtype=torch.float32)
    f = f[:, None] * f[None, :]
    return f / f.sum()  # [4, 4]


# ----------------------------------------------------------------------------------------------- the network
def make_net(
    res=16,
    w_dim=16,
    map_layers=2,
    conv_clamp=None,
    num_fp16_res=0,
    lr=0.01,
    channel_base=128,
    channel_max=16,
    use_noise=True,
    seed=0,
) -> dict:
    """A random StyleGAN2 G_ema as nested dicts of tensors + options (values moved off their init, like training)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g) * scale + shift

    log2 = int(math.log2(res))
    resolutions = [2**i for i in range(2, log2 + 1)]
    ch = {r: min(channel_base // r, channel_max) for r in resolutions}
    fp16_res = max(2 ** (log2 + 1 - num_fp16_res), 8)
    mapping = [
        dict(weight=randn(w_dim, w_dim, scale=1 / lr), bias=randn(w_dim, scale=0.3 / lr)) for _ in range(map_layers)
    ]

    def layer(cin, cout, r, up):
        d = dict(
            weight=randn(cout, cin, 3, 3),
            bias=randn(cout, scale=0.3),
            affine=dict(weight=randn(cin, w_dim), bias=randn(cin, scale=0.3, shift=1.0)),
            up=up,
            resolution=r,
        )
        if use_noise:
            d.update(noise_const=randn(r, r), noise_strength=randn((), scale=0.3))
        return d

    def torgb(cin):
        return dict(
            weight=randn(3, cin, 1, 1),
            bias=randn(3, scale=0.3),
            affine=dict(weight=randn(cin, w_dim), bias=randn(cin, scale=0.3, shift=1.0)),
        )

    blocks = {}
    for r in resolutions:
        b = dict(use_fp16=r >= fp16_res, conv1=layer(ch[r], ch[r], r, 1), torgb=torgb(ch[r]))
        if r == 4:
            b["const"] = randn(ch[4], 4, 4)
        else:
            b["conv0"] = layer(ch[r // 2], ch[r], r, 2)
        blocks[r] = b
    return dict(
        res=res,
        w_dim=w_dim,
        lr=lr,
        conv_clamp=conv_clamp,
        use_noise=use_noise,
        mapping=mapping,
        w_avg=randn(w_dim),
        blocks=blocks,
        channels=ch,
        num_fp16_res=num_fp16_res,
    )


# ----------------------------------------------------------------------------------------------- the forward
def nv_mapping(net, z, psi=1.0):
    """normalize_2nd_moment, lrelu FC layers with lr gains, then lerp towards w_avg: [B, z] -> [B, w]."""
    x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
    for fc in net["mapping"]:
        x = x @ (fc["weight"] * (net["lr"] / math.sqrt(x.shape[1]))).t() + fc["bias"] * net["lr"]
        x = F.leaky_relu(x, 0.2) * math.sqrt(2)
    return net["w_avg"] + psi * (x - net["w_avg"])


def nv_affine(aff, w):
    return w @ (aff["weight"] / math.sqrt(w.shape[1])).t() + aff["bias"]  # [B, in]


def nv_styles(net, w):
    """Affine outputs in synthesis order: b4.conv1, b4.torgb, then conv0, conv1, torgb per block."""
    out = []
    for r, b in net["blocks"].items():
        out += [nv_affine(b[n]["affine"], w) for n in (["conv1", "torgb"] if r == 4 else ["conv0", "conv1", "torgb"])]
    return out


def _fir(x, pad):
    """Depthwise [1,3,3,1] filter (gain 4, as after 2x zero insertion) with padding (before, after)."""
    c = x.shape[1]
    k = (setup_filter() * 4).flip([0, 1]).expand(c, 1, 4, 4)
    return F.conv2d(F.pad(x, [pad[0], pad[1], pad[0], pad[1]]), k, groups=c)


def _zero_insert(x, size):
    b, c, h, w = x.shape
    u = x.new_zeros(b, c, size, size)
    u[:, :, ::2, ::2] = x
    return u


def nv_layer(net, p, x, w, noise_mode="const"):
    """SynthesisLayer: modulated + demodulated 3x3 conv (up 2: transposed conv then FIR), noise, bias, lrelu, clamp."""
    s = nv_affine(p["affine"], w)
    wt = p["weight"][None] * s[:, None, :, None, None]  # [B, O, I, 3, 3]
    wt = wt * (wt.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    outs = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        if p["up"] == 2:  # transposed stride-2 conv == zero insertion + full convolution
            u = _zero_insert(xi, 2 * xi.shape[2] - 1)
            yi = _fir(F.conv2d(F.pad(u, [2, 2, 2, 2]), wt[i].flip([2, 3])), (1, 1))
        else:
            yi = F.conv2d(xi, wt[i], padding=1)
        outs.append(yi)
    y = torch.cat(outs)
    if "noise_const" in p and noise_mode == "const":
        y = y + p["noise_const"] * p["noise_strength"]
    y = F.leaky_relu(y + p["bias"][None, :, None, None], 0.2) * math.sqrt(2)
    c = net["conv_clamp"]
    return y if c is None else y.clamp(-c, c)


def nv_torgb(net, p, x, w):
    s = nv_affine(p["affine"], w) / math.sqrt(x.shape[1])  # weight_gain on the styles
    y = torch.einsum("bihw,oi,bi->bohw", x, p["weight"][:, :, 0, 0], s) + p["bias"][None, :, None, None]
    c = net["conv_clamp"]
    return y if c is None else y.clamp(-c, c)


def nv_forward(net, z, psi=1.0, noise_mode="const"):
    """The 'skip' generator: images [B, 3, R, R] from z, every layer fed the same truncated w."""
    w = nv_mapping(net, z, psi)
    x = img = None
    for r, b in net["blocks"].items():
        if r == 4:
            x = nv_layer(net, b["conv1"], b["const"][None].expand(z.shape[0], -1, -1, -1), w, noise_mode)
        else:
            x = nv_layer(net, b["conv1"], nv_layer(net, b["conv0"], x, w, noise_mode), w, noise_mode)
            img = _fir(_zero_insert(img, 2 * img.shape[2]), (2, 1))
        y = nv_torgb(net, b["torgb"], x, w)
        img = y if img is None else img + y
    return img


# ----------------------------------------------------------------------------------------------- the pickle
class Persistent:
    """Pickles exactly like a torch_utils.persistence class instance (needs `fake_nvidia_modules` installed)."""

    def __init__(self, class_name, state, module_src=SOURCE):
        self.class_name, self.state, self.module_src = class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,))


def fake_nvidia_modules(monkeypatch) -> None:
    """Importable names `torch_utils.persistence._reconstruct_persistent_obj` and `dnnlib.util.EasyDict` for
    the writer (pickle records globals by module + name); they are never called by the reader."""

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the reader must not import this")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    easydict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    for name, attrs in {
        "torch_utils": {},
        "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
        "dnnlib": {"EasyDict": easydict},
        "dnnlib.util": {"EasyDict": easydict},
    }.items():
        mod = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(mod, k, v)
        monkeypatch.setitem(sys.modules, name, mod)


def _easydict(**kw):
    return sys.modules["dnnlib.util"].EasyDict(**kw)


def module(class_name, params=None, buffers=None, children=None, init_args=(), init_kwargs=None, src=SOURCE, **attrs):
    """A Persistent whose state is what nn.Module.__dict__ holds (parameters as Parameters, hook dicts, ...)."""
    state = dict(
        training=False,
        _parameters=OrderedDict(
            (k, torch.nn.Parameter(v.clone(), requires_grad=False)) for k, v in (params or {}).items()
        ),
        _buffers=OrderedDict((k, v.clone()) for k, v in (buffers or {}).items()),
        _non_persistent_buffers_set=set(),
        _backward_hooks=OrderedDict(),
        _is_full_backward_hook=None,
        _forward_hooks=OrderedDict(),
        _forward_pre_hooks=OrderedDict(),
        _state_dict_hooks=OrderedDict(),
        _load_state_dict_pre_hooks=OrderedDict(),
        _load_state_dict_post_hooks=OrderedDict(),
        _modules=OrderedDict(children or {}),
    )
    state.update(attrs)
    state.update(_init_args=tuple(init_args), _init_kwargs=_easydict(**(init_kwargs or {})))
    return Persistent(class_name, state, src)


def _fc(p, in_f, lr=1.0, activation="linear", bias_init=0):
    return module(
        "FullyConnectedLayer",
        params=dict(weight=p["weight"], bias=p["bias"]),
        activation=activation,
        weight_gain=np.float64(lr / np.sqrt(in_f)),
        bias_gain=lr,
        init_args=(in_f, p["weight"].shape[0]),
        init_kwargs=dict(activation=activation, lr_multiplier=lr, bias_init=bias_init),
    )


def _synthesis_layer(net, p, channels_last=False):
    w = p["weight"].contiguous(memory_format=torch.channels_last) if channels_last else p["weight"]
    params = dict(weight=w, bias=p["bias"])
    buffers = dict(resample_filter=setup_filter())
    if "noise_const" in p:
        params["noise_strength"] = p["noise_strength"]
        buffers["noise_const"] = p["noise_const"]
    return module(
        "SynthesisLayer",
        params=params,
        buffers=buffers,
        children=dict(affine=_fc(p["affine"], net["w_dim"], bias_init=1)),
        resolution=p["resolution"],
        up=p["up"],
        use_noise="noise_const" in p,
        activation="lrelu",
        conv_clamp=net["conv_clamp"],
        padding=1,
        act_gain=np.float64(np.sqrt(2)),
    )


def _torgb_layer(net, p):
    return module(
        "ToRGBLayer",
        params=dict(weight=p["weight"], bias=p["bias"]),
        conv_clamp=net["conv_clamp"],
        children=dict(affine=_fc(p["affine"], net["w_dim"], bias_init=1)),
        weight_gain=np.float64(1 / np.sqrt(p["weight"].shape[1])),
    )


def generator_module(net, c_dim=0, architecture="skip", channels_last_fp16=False):
    """The persistent Generator (mapping + synthesis) of `net`."""
    w_dim, res = net["w_dim"], net["res"]
    fcs = {f"fc{i}": _fc(fc, w_dim, net["lr"], "lrelu") for i, fc in enumerate(net["mapping"])}
    if c_dim:
        fcs["embed"] = _fc(dict(weight=torch.ones(w_dim, c_dim), bias=torch.zeros(w_dim)), c_dim)
    num_ws = 2 * int(math.log2(res)) - 2
    mapping = module(
        "MappingNetwork",
        buffers=dict(w_avg=net["w_avg"]),
        children=fcs,
        z_dim=w_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        num_ws=num_ws,
        num_layers=len(net["mapping"]),
        w_avg_beta=0.995,
    )
    blocks = {}
    for r, b in net["blocks"].items():
        cl = channels_last_fp16 and b["use_fp16"]
        children = {} if r == 4 else dict(conv0=_synthesis_layer(net, b["conv0"], cl))
        children.update(conv1=_synthesis_layer(net, b["conv1"], cl), torgb=_torgb_layer(net, b["torgb"]))
        blocks[f"b{r}"] = module(
            "SynthesisBlock",
            params=dict(const=b["const"]) if r == 4 else {},
            buffers=dict(resample_filter=setup_filter()),
            children=children,
            in_channels=0 if r == 4 else net["channels"][r // 2],
            w_dim=w_dim,
            resolution=r,
            img_channels=3,
            is_last=r == res,
            architecture=architecture,
            use_fp16=b["use_fp16"],
            channels_last=cl,
            num_conv=1 if r == 4 else 2,
            num_torgb=1,
        )
    synthesis = module(
        "SynthesisNetwork",
        children=blocks,
        w_dim=w_dim,
        img_resolution=res,
        img_resolution_log2=int(math.log2(res)),
        img_channels=3,
        block_resolutions=list(net["blocks"]),
        num_ws=num_ws,
    )
    kwargs = dict(
        z_dim=w_dim,
        w_dim=w_dim,
        mapping_kwargs=_easydict(num_layers=len(net["mapping"])),
        synthesis_kwargs=_easydict(num_fp16_res=net["num_fp16_res"], conv_clamp=net["conv_clamp"]),
        c_dim=c_dim,
        img_resolution=res,
        img_channels=3,
    )
    return module(
        "Generator",
        children=dict(synthesis=synthesis, mapping=mapping),
        init_kwargs=kwargs,
        z_dim=w_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        img_resolution=res,
        img_channels=3,
        num_ws=num_ws,
    )


def snapshot(G, res=16) -> dict:
    """The dict training_loop.py pickles: training options, G, D, G_ema and the ADA augmentation pipe."""
    D = module(
        "Discriminator",
        children=dict(
            b4=module(
                "DiscriminatorBlock", params=dict(weight=torch.ones(8, 8, 3, 3)), architecture="resnet", conv_clamp=256
            )
        ),
        c_dim=0,
        img_resolution=res,
    )
    pipe = module(
        "AugmentPipe",
        buffers=dict(p=torch.tensor(0.2), Hz_geom=torch.linspace(-1, 1, 12)),
        xflip=1.0,
        rotate90=1.0,
        xint=1.0,
        xint_max=0.125,
    )
    return dict(
        training_set_kwargs=dict(
            class_name="training.dataset.ImageFolderDataset",
            path="/data/set.zip",
            use_labels=False,
            max_size=1000,
            xflip=False,
            resolution=res,
        ),
        G=G,
        D=D,
        G_ema=G,
        augment_pipe=pipe,
    )


def write_pickle(obj, path, protocol=4) -> None:
    """Protocol 4 is what Python >= 3.8 writes; 3 (Python 3.7, stylegan2-ada's pinned version) with numpy 1.x's
    `numpy.core.multiarray` module path, as the published ADA snapshots have."""
    data = pickle.dumps(obj, protocol=protocol)
    if protocol < 4:  # GLOBAL opcodes are newline-terminated text, so the module path can be rewritten
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    with open(path, "wb") as f:
        f.write(data)
