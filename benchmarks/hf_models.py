"""Hugging Face transformers vision models that contain BatchNorm or a frozen BN, built from their default (or a
small) config with random weights: nothing is downloaded. Names are 'hf:CLASS' (a transformers model class)."""

from __future__ import annotations

from torch import nn

# The task class of every vision family whose modeling code has a BatchNorm (or a frozen one) and that runs on
# pixel_values alone, with config overrides that keep it small or avoid downloads (a pretrained timm backbone).
_NO_DOWNLOAD = {"use_pretrained_backbone": False, "use_timm_backbone": False}
HF_MODELS = {
    "BeitForSemanticSegmentation": {"num_hidden_layers": 4, "out_indices": [1, 2, 3, 4]},
    "ConditionalDetrModel": _NO_DOWNLOAD,
    "CvtForImageClassification": {},
    "DFineModel": {},
    "DPTForDepthEstimation": {"num_hidden_layers": 4, "backbone_out_indices": [0, 1, 2, 3],
                              "use_batch_norm_in_fusion_residual": True},
    "DabDetrModel": _NO_DOWNLOAD,
    "Data2VecVisionForSemanticSegmentation": {"num_hidden_layers": 4, "out_indices": [1, 2, 3, 4]},
    "DetrModel": _NO_DOWNLOAD,
    "EfficientNetForImageClassification": {"width_coefficient": 1.0, "depth_coefficient": 1.0, "hidden_dim": 1280,
                                           "image_size": 224},
    "GLPNForDepthEstimation": {},
    "HGNetV2ForImageClassification": {},
    "LevitForImageClassification": {},
    "MobileNetV1ForImageClassification": {},
    "MobileNetV2ForSemanticSegmentation": {},
    "MobileViTForSemanticSegmentation": {},
    "MobileViTV2ForSemanticSegmentation": {},
    "RTDetrModel": {},
    "RTDetrV2Model": {},
    "RegNetForImageClassification": {},
    "ResNetForImageClassification": {},
    "SegformerForSemanticSegmentation": {},
    "SwiftFormerForImageClassification": {},
    "TableTransformerModel": _NO_DOWNLOAD,
    "TextNetForImageClassification": {},
    "UperNetForSemanticSegmentation": {},
}


def hf_model(name: str) -> nn.Module:
    """The randomly initialised transformers model 'hf:CLASS' (see HF_MODELS), in eval mode."""
    import transformers

    cls = getattr(transformers, name.removeprefix("hf:"))
    config = cls.config_class(**HF_MODELS[name.removeprefix("hf:")])
    return cls(config).eval()
