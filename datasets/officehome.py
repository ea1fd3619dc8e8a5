"""Office-Home (Venkateswara et al. 2017): 65 everyday objects in the Art, Clipart, Product and Real_World domains."""

from itertools import permutations

from datasets.domain_adaptation import DomainSpec
from datasets.download import Archive

# Alphabetical (Python string order), identical in every domain; TLlib's lists use another order and are relabelled.
CLASSES = (
    "Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike", "Bottle", "Bucket", "Calculator", "Calendar", "Candles",
    "Chair", "Clipboards", "Computer", "Couch", "Curtains", "Desk_Lamp", "Drill", "Eraser", "Exit_Sign", "Fan",
    "File_Cabinet", "Flipflops", "Flowers", "Folder", "Fork", "Glasses", "Hammer", "Helmet", "Kettle", "Keyboard",
    "Knives", "Lamp_Shade", "Laptop", "Marker", "Monitor", "Mop", "Mouse", "Mug", "Notebook", "Oven", "Pan",
    "Paper_Clip", "Pen", "Pencil", "Postit_Notes", "Printer", "Push_Pin", "Radio", "Refrigerator", "Ruler",
    "Scissors", "Screwdriver", "Shelf", "Sink", "Sneakers", "Soda", "Speaker", "Spoon", "TV", "Table", "Telephone",
    "ToothBrush", "Toys", "Trash_Can", "Webcam",
)  # fmt: skip

_FOLDERS = {"Ar": "Art", "Cl": "Clipart", "Pr": "Product", "Rw": "Real_World"}

OFFICE_HOME = DomainSpec(
    title="Office-Home",
    classes=CLASSES,
    folders=_FOLDERS,
    aliases={"realworld": "Rw", "real world": "Rw"},
    tasks=tuple(permutations(_FOLDERS, 2)),
    archives=(
        Archive("image_list", "image_list.zip", "https://cloud.tsinghua.edu.cn/f/ca3a3b6a8d554905b4cd/?dl=1"),
        Archive("Art", "Art.tgz", "https://cloud.tsinghua.edu.cn/f/4691878067d04755beab/?dl=1"),
        Archive("Clipart", "Clipart.tgz", "https://cloud.tsinghua.edu.cn/f/0d41e7da4558408ea5aa/?dl=1"),
        Archive("Product", "Product.tgz", "https://cloud.tsinghua.edu.cn/f/76186deacd7c4fa0a679/?dl=1"),
        Archive("Real_World", "Real_World.tgz", "https://cloud.tsinghua.edu.cn/f/dee961894cc64b1da1d7/?dl=1"),
    ),
    homepage="https://www.hemanthdv.org/officeHomeDataset.html",
)
