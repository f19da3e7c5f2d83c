"""DeepLab-v3: torchvision's deeplabv3_resnet101 wrapped to the dgcn segmentation interface."""

from torchvision.models.segmentation import deeplabv3_resnet101

from dgcn.models.resnet import ResNet101Trunk
from dgcn.models.segmenter import SegmentationNet, check_num_classes


def deeplab_v3(num_classes: int) -> SegmentationNet:
    """torchvision DeepLab-v3 ResNet-101 (no weights, no aux head): scores at stride 8 before its upsampling;
    feature_dim 1280 (layer1 256 + layer3 1024)."""
    check_num_classes(num_classes)
    reference = deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    return SegmentationNet(ResNet101Trunk(reference.backbone), reference.classifier, num_classes)
