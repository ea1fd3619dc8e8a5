"""VisDA-2017 classification: 12 classes, synthetic renders (train/) to real photos (validation/)."""

from datasets.domain_adaptation import DomainSpec
from datasets.download import Archive

CLASSES = (
    "aeroplane", "bicycle", "bus", "car", "horse", "knife", "motorcycle", "person", "plant", "skateboard", "train",
    "truck",
)  # fmt: skip

VISDA2017 = DomainSpec(
    title="VisDA-2017",
    classes=CLASSES,
    folders={"Synthetic": "train", "Real": "validation"},
    aliases={"t": "Synthetic", "v": "Real"},
    tasks=(("Synthetic", "Real"),),
    archives=(
        Archive("image_list", "image_list.zip", "https://cloud.tsinghua.edu.cn/f/c107de37b8094c5398dc/?dl=1"),
        Archive("train", "train.tar", "http://csr.bu.edu/ftp/visda17/clf/train.tar"),
        Archive("validation", "validation.tar", "http://csr.bu.edu/ftp/visda17/clf/validation.tar"),
    ),
    image_pattern="*.png (*.jpg in validation/)",
    homepage="https://ai.bu.edu/visda-2017/",
)
