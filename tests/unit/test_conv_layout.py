"""The image and video CNNs run their rows channels-last (oneDNN's and cuDNN's faster layout for
convolution, BatchNorm and pooling) and give what the same network gives on NCHW rows."""

from __future__ import annotations

import torch

from mmcli.models.encoders.image import ConvNet, run_on_rows


def test_rows_reach_the_network_channels_last_with_the_same_result() -> None:
    torch.manual_seed(0)
    net = ConvNet(3, [8, 16], hidden_size=12).eval()
    layouts = []
    net.register_forward_pre_hook(lambda module, args: layouts.append(
        args[0].is_contiguous(memory_format=torch.channels_last)))
    x = torch.randn(5, 3, 16, 16)
    keep = torch.tensor([True, False, True, True, True])

    out = run_on_rows(net, x, keep)

    assert layouts == [True]
    with torch.no_grad():
        reference = net.net(x[keep].contiguous()).flatten(2).transpose(1, 2)
    assert out.shape == (5, 16, 12)
    torch.testing.assert_close(out[keep], reference, rtol=1e-5, atol=1e-5)
    assert not out[1].any()  # the dropped row stays zeros
