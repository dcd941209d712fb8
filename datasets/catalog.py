"""The full public data sets: where their publishers serve them and the sha256 of every file we use.

Checksums are of the files as the project's developers hold them (../shared/data, each folder's
SOURCE.md says where they came from: the C-MAPSS files are byte-identical to NASA's CMAPSSData.zip
members, verified by git blob ids; the AI4I csv's rows equal UCI's, its bytes were not compared with
UCI's download; the CWRU files came from a GitHub copy named by fault, not from the university's site
directly). A download whose bytes differ is refused, never used.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DataSet:
    """One public data set: its folder name, who publishes it, where a person gets it, and its terms."""

    name: str
    title: str
    page: str  # the publisher's page, for a download by hand
    terms: str


@dataclass(frozen=True, slots=True)
class File:
    """One file of a set: its path in the set's folder, checksum, size, and the URL that serves it."""

    dataset: str
    path: str
    sha256: str
    size: int
    url: str  # the file itself, or an archive holding it
    member: str | None = None  # its name inside the archive at url (nested zip archives are searched too)


NASA = "https://phm-datasets.s3.amazonaws.com/NASA/6.+Turbofan+Engine+Degradation+Simulation+Data+Set.zip"
UCI = "https://archive.ics.uci.edu/static/public/601/ai4i+2020+predictive+maintenance+dataset.zip"
CWRU = "https://engineering.case.edu/sites/default/files/"

SETS = {
    s.name: s
    for s in (
        DataSet("cmapss", "NASA C-MAPSS turbofan engine degradation (Saxena et al., PHM08)",
                "https://www.nasa.gov/intelligent-systems-division/discovery-and-systems-health/pcoe/"
                "pcoe-data-set-repository/ (Turbofan Engine Degradation Simulation)",
                "NASA open data; cite A. Saxena, K. Goebel, D. Simon, N. Eklund, PHM08"),
        DataSet("ai4i2020", "AI4I 2020 predictive maintenance (S. Matzka, 2020)",
                "https://archive.ics.uci.edu/dataset/601/ai4i+2020+predictive+maintenance+dataset",
                "CC BY 4.0 (UCI Machine Learning Repository)"),
        DataSet("cwru-bearing", "Case Western Reserve University bearing data, 12 kHz drive end, 0 HP",
                "https://engineering.case.edu/bearingdatacenter/download-data-file",
                "CWRU Bearing Data Center; cite the center when results are shown"),
    )
}

FILES = (
    File("ai4i2020", "ai4i2020.csv", "9841aaa04b716d41ce9501f42d9388de7f571566608945061d026f95853c0337", 508149, UCI, "ai4i2020.csv"),
    File("cmapss", "RUL_FD001.txt", "a19c8ec94931949d0485bdc35118206e9c81c4547b422efb9cf86f4ceddbceca", 429, NASA, "RUL_FD001.txt"),
    File("cmapss", "RUL_FD003.txt", "df1e0566306b174a2de41c67a3e7a51877889598b78643fc3e5685259091b7cb", 428, NASA, "RUL_FD003.txt"),
    File("cmapss", "readme.txt", "f09bc57eea83ed86cb4bc812dd3f53e96a6f0f813c3350909b615a54618d8d16", 2456, NASA, "readme.txt"),
    File("cmapss", "test_FD001.txt", "3cda7109ce17bafb5443f2ac926cfcf88154b941b8c4cf95eb55d1ddd6f52851", 2228855, NASA, "test_FD001.txt"),
    File("cmapss", "test_FD003.txt", "299babd63c8d987cef079c4a425429f33b3a34797d803bbe2ad48c29dbd0d790", 2826651, NASA, "test_FD003.txt"),
    File("cmapss", "train_FD001.txt", "963b5e22825b34d8b21c69e1aeb4af3e647050eb672ee8834ba4b5d91d2de0f8", 3515356, NASA, "train_FD001.txt"),
    File("cmapss", "train_FD002.txt", "dac6c4dbc4e7c1bdeb5747da3d313d05c395bb99801b44a002b26a2ba13d788f", 9082480, NASA, "train_FD002.txt"),
    File("cmapss", "train_FD003.txt", "2abbe9968cc5e8eb091980f51b20f62bb4127336d3482cb52071d53bf23329e2", 4213862, NASA, "train_FD003.txt"),
    File("cmapss", "train_FD004.txt", "27ef6160b6a1dcb2613a88de9c239f763b223f02cdc41dc5cdedc5dc189b6218", 10350705, NASA, "train_FD004.txt"),
    File("cwru-bearing", "12k_DE/B007_0.mat", "b00628f8dd8d1d930af77fa465d1e5cdb385fe259489053f91f3680bda7f640e", 2942112, CWRU + "118.mat"),
    File("cwru-bearing", "12k_DE/B014_0.mat", "5bea2c60f177215ba3ec4ae287faf745d7e14aed1a12efe9e37b27c27044bafc", 2924712, CWRU + "185.mat"),
    File("cwru-bearing", "12k_DE/B021_0.mat", "fcc0ee740fa123b1f4683f555458891719efb2857afd9fdee63e8fde0ed14469", 2928192, CWRU + "222.mat"),
    File("cwru-bearing", "12k_DE/B028_0.mat", "37f3f8e0268a9cd7df8ff5e15e326be06ab099b2291a2282041d01bb89a7c924", 966608, CWRU + "48.mat"),
    File("cwru-bearing", "12k_DE/IR007_0.mat", "f80b0ea04fd06b372a0eaec7c056543ea37e4bb4727a5b173d2a5bacd2aa9cab", 2910768, CWRU + "105.mat"),
    File("cwru-bearing", "12k_DE/IR014_0.mat", "f5448673725c4ea2735fe7d3fe4b16ad82b217eac6b62c4bf351c4549b0a5229", 2924712, CWRU + "169.mat"),
    File("cwru-bearing", "12k_DE/IR021_0.mat", "9f723d6d9d2eba714c6dc50f99321dffa73d8b1e4d3605675b2c2251511eff80", 2931672, CWRU + "209.mat"),
    File("cwru-bearing", "12k_DE/IR028_0.mat", "2e7400f922b75888dbee1fc3ab8c7cd770822127aa97353b7b622de103e79d46", 966608, CWRU + "56.mat"),
    File("cwru-bearing", "12k_DE/OR007@12_0.mat", "d6ebef8850c114f136018381f6d3fa1c700073a784fffac72c0c8a3e21a227e3", 2935152, CWRU + "156.mat"),
    File("cwru-bearing", "12k_DE/OR007@3_0.mat", "f1f51d8c3b66e90fcdd8de15be95c2d4d3e9bac018dbba57f3006e930eec6b22", 2935152, CWRU + "144.mat"),
    File("cwru-bearing", "12k_DE/OR007@6_0.mat", "35a095307d0971477049b343a1b5981dde465a58fb7f233ad89b035068c1717d", 2928192, CWRU + "130.mat"),
    File("cwru-bearing", "12k_DE/OR014@6_0.mat", "fa571b47cd942f9514a920b403fb7c053cd442bb2963a360a96d0f61432f03e9", 2924712, CWRU + "197.mat"),
    File("cwru-bearing", "12k_DE/OR021@12_0.mat", "0b9c84acca45c3ee6ecbd697eb186a903293809625fda231a18da8c588e34383", 2924712, CWRU + "258.mat"),
    File("cwru-bearing", "12k_DE/OR021@3_0.mat", "9e02c5e5785f51cc9a60bf31ccb14e6869ff7d452e4aedefa325aa8a6d9da4e9", 2921232, CWRU + "246.mat"),
    File("cwru-bearing", "12k_DE/OR021@6_0.mat", "ebcbdb96612e8085bbdbf81f0e5e8e8a8d1a693d1ec559c4894f7792771aa9b2", 2938632, CWRU + "234.mat"),
    File("cwru-bearing", "Normal/Normal_0.mat", "16bf48babcf1c7ac224bc1a81cd9eafdb27e42d5cf559761907e067e8eeadf3c", 3903344, CWRU + "97.mat"),
)


def files_of(name: str) -> tuple[File, ...]:
    """Every catalogued file of one set; KeyError names the known sets."""
    if name not in SETS:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(SETS)}")
    return tuple(f for f in FILES if f.dataset == name)
