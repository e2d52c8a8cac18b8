"""The architectures the studies compared, wrapped from torchvision and timm (never copied).

Each is registered at the input size it was published with, with ImageNet
normalisation, and works with any number of classes and input channels (a
different channel count gets a fresh first convolution; ``pretrained``
weights adapt theirs).  ``pretrained="imagenet"`` loads the published weights
from torchvision's or timm's cache; nothing can be downloaded on an offline
machine, so pass a local file there.

torchvision supplies the classic networks (their published weights are the
ones the studies used through Keras ports); timm supplies MobileNet V1, which
torchvision lacks, and the modern compact networks.
"""

from __future__ import annotations

from torch import nn

from cellscreen.models._registry import DataConfig, register_model


# timm and torchvision are imported when a network of theirs is built, not when the registry is read:
# importing them costs several seconds of start-up, which commands that only use cellscreen's own
# networks (the default model) should not pay.

def _timm(name: str, *, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    import timm  # keeps start-up fast (see above)

    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)


def _torchvision(arch: str, *, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    import torchvision  # keeps start-up fast (see above)

    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes, **kwargs)
    if in_chans != 3:  # swap the first convolution for one that reads in_chans channels
        name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
        new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        bias=conv.bias is not None)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
    return model


@register_model("alexnet", data_config=DataConfig(input_size=224), pool="avgpool",
                imagenet="torchvision:AlexNet_Weights.IMAGENET1K_V1",
                description="torchvision AlexNet: 5 convs, dense 4096-4096")
def alexnet(*, num_classes: int, in_chans: int = 3, input_size: int = 224) -> nn.Module:
    return _torchvision("alexnet", num_classes=num_classes, in_chans=in_chans)


@register_model("vgg16", data_config=DataConfig(input_size=224), pool="avgpool",
                imagenet="torchvision:VGG16_Weights.IMAGENET1K_V1",
                description="torchvision VGG16: 13 convs, dense 4096-4096")
def vgg16(*, num_classes: int, in_chans: int = 3, input_size: int = 224) -> nn.Module:
    return _torchvision("vgg16", num_classes=num_classes, in_chans=in_chans)


@register_model("vgg16_bn", data_config=DataConfig(input_size=224), pool="avgpool",
                imagenet="torchvision:VGG16_BN_Weights.IMAGENET1K_V1",
                description="torchvision VGG16 with batch norm")
def vgg16_bn(*, num_classes: int, in_chans: int = 3, input_size: int = 224) -> nn.Module:
    return _torchvision("vgg16_bn", num_classes=num_classes, in_chans=in_chans)


@register_model("resnet18", data_config=DataConfig(input_size=224), classifier="fc",
                imagenet="torchvision:ResNet18_Weights.IMAGENET1K_V1",
                description="torchvision ResNet-18")
def resnet18(*, num_classes: int, in_chans: int = 3, input_size: int = 224) -> nn.Module:
    return _torchvision("resnet18", num_classes=num_classes, in_chans=in_chans)


@register_model("resnet50", data_config=DataConfig(input_size=224), classifier="fc",
                imagenet="torchvision:ResNet50_Weights.IMAGENET1K_V2",
                description="torchvision ResNet-50")
def resnet50(*, num_classes: int, in_chans: int = 3, input_size: int = 224) -> nn.Module:
    return _torchvision("resnet50", num_classes=num_classes, in_chans=in_chans)


@register_model("inception_v3", data_config=DataConfig(input_size=299), classifier="fc",
                imagenet="torchvision:Inception_V3_Weights.IMAGENET1K_V1",
                description="torchvision Inception v3 at 299 px, with its auxiliary head")
def inception_v3(*, num_classes: int, in_chans: int = 3, input_size: int = 299) -> nn.Module:
    # The auxiliary head reads a 17x17 map through a 5x5 pooling and a 5x5 convolution, so it only fits
    # inputs of about 299 px; below that (the network itself accepts 75 px and up) it is left out.
    return _torchvision("inception_v3", num_classes=num_classes, in_chans=in_chans,
                        aux_logits=input_size >= 299, transform_input=False, init_weights=True)


@register_model("googlenet", data_config=DataConfig(input_size=224), classifier="fc",
                imagenet="torchvision:GoogLeNet_Weights.IMAGENET1K_V1",
                description="torchvision GoogLeNet (Inception v1) with its two auxiliary heads")
def googlenet(*, num_classes: int, in_chans: int = 3, input_size: int = 224) -> nn.Module:
    return _torchvision("googlenet", num_classes=num_classes, in_chans=in_chans,
                        aux_logits=True, transform_input=False, init_weights=True)


@register_model("mobilenet_v1", data_config=DataConfig(input_size=224), classifier=None,
                imagenet="timm:mobilenetv1_100.ra4_e3600_r224_in1k",
                description="timm MobileNet V1 1.0")
def mobilenet_v1(*, num_classes: int, in_chans: int = 3, input_size: int = 224) -> nn.Module:
    return _timm("mobilenetv1_100", num_classes=num_classes, in_chans=in_chans)


@register_model("mobilenet_v2", data_config=DataConfig(input_size=224),
                imagenet="torchvision:MobileNet_V2_Weights.IMAGENET1K_V1",
                description="torchvision MobileNet V2")
def mobilenet_v2(*, num_classes: int, in_chans: int = 3, input_size: int = 224) -> nn.Module:
    return _torchvision("mobilenet_v2", num_classes=num_classes, in_chans=in_chans)


@register_model("mobilenet_v3_large", data_config=DataConfig(input_size=224),
                imagenet="torchvision:MobileNet_V3_Large_Weights.IMAGENET1K_V1",
                description="torchvision MobileNet V3 Large")
def mobilenet_v3_large(*, num_classes: int, in_chans: int = 3, input_size: int = 224) -> nn.Module:
    return _torchvision("mobilenet_v3_large", num_classes=num_classes, in_chans=in_chans)


@register_model("mobilenet_v3_small", data_config=DataConfig(input_size=96), classifier=None,
                imagenet="timm:mobilenetv3_small_100.lamb_in1k",
                description="timm MobileNetV3-Small 1.0: a compact mobile network")
def mobilenet_v3_small(*, num_classes: int, in_chans: int = 3, input_size: int = 96) -> nn.Module:
    return _timm("mobilenetv3_small_100", num_classes=num_classes, in_chans=in_chans)


@register_model("efficientnet_b0", data_config=DataConfig(input_size=224), classifier=None,
                imagenet="timm:efficientnet_b0.ra_in1k",
                description="timm EfficientNet-B0")
def efficientnet_b0(*, num_classes: int, in_chans: int = 3, input_size: int = 224) -> nn.Module:
    return _timm("efficientnet_b0", num_classes=num_classes, in_chans=in_chans)


@register_model("resnet10t", data_config=DataConfig(input_size=64), classifier=None,
                imagenet="timm:resnet10t.c3_in1k",
                description="timm ResNet-10-T: a 10-layer ResNet with a tiered stem")
def resnet10t(*, num_classes: int, in_chans: int = 3, input_size: int = 64) -> nn.Module:
    return _timm("resnet10t", num_classes=num_classes, in_chans=in_chans)
