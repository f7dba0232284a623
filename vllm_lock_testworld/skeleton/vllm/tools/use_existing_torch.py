"""Remove torch pins so that an already installed torch is used."""
import argparse
import glob

PREFIXES = ("torch=", "torchvision=", "torchaudio=", "torchcodec=")


def _matches(line: str, prefix_mode: bool) -> bool:
    if not prefix_mode:
        return "torch" in line.lower()
    text = "".join(line.split()).lower().lstrip("\"'")
    return text.startswith(PREFIXES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--prefix",
        action="store_true",
        help="only remove lines that pin torch, torchvision, torchaudio or torchcodec",
    )
    args = parser.parse_args()
    files = glob.glob("requirements/**/*.txt", recursive=True)
    files += glob.glob("requirements/**/*.in", recursive=True)
    files += ["pyproject.toml"]
    for file in sorted(set(files)):
        with open(file) as f:
            lines = f.readlines()
        if "torch" not in "".join(lines).lower():
            continue
        print(f">>> cleaning {file}")
        with open(file, "w") as f:
            for line in lines:
                if _matches(line, args.prefix):
                    print(f"removed: {line.strip()}")
                else:
                    f.write(line)


if __name__ == "__main__":
    main()
