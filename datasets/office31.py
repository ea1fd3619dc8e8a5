"""Office-31 (Saenko et al. 2010) as distributed by TLlib: 31 office objects in the amazon, dslr and webcam domains."""

from datasets.domain_adaptation import DomainSpec
from datasets.download import Archive

CLASSES = (
    "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair", "desk_lamp",
    "desktop_computer", "file_cabinet", "headphones", "keyboard", "laptop_computer", "letter_tray", "mobile_phone",
    "monitor", "mouse", "mug", "paper_notebook", "pen", "phone", "printer", "projector", "punchers", "ring_binder",
    "ruler", "scissors", "speaker", "stapler", "tape_dispenser", "trash_can",
)  # fmt: skip

OFFICE31 = DomainSpec(
    title="Office-31",
    classes=CLASSES,
    folders={"A": "amazon", "W": "webcam", "D": "dslr"},
    aliases={},
    tasks=(("A", "W"), ("D", "W"), ("W", "D"), ("A", "D"), ("D", "A"), ("W", "A")),
    archives=(
        Archive("image_list", "image_list.zip", "https://cloud.tsinghua.edu.cn/f/2c1dd9fbcaa9455aa4ad/?dl=1"),
        Archive("amazon", "amazon.tgz", "https://cloud.tsinghua.edu.cn/f/ec12dfcddade43ab8101/?dl=1"),
        Archive("dslr", "dslr.tgz", "https://cloud.tsinghua.edu.cn/f/a41d818ae2f34da7bb32/?dl=1"),
        Archive("webcam", "webcam.tgz", "https://cloud.tsinghua.edu.cn/f/8a41009a166e4131adcd/?dl=1"),
    ),
    image_subdir="images",
    homepage="https://faculty.cc.gatech.edu/~judy/domainadapt/ (TLlib mirrors it with image lists)",
)
