from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

setup(
    name="wmdd_hf",
    version="0.1.0",
    description="Dataset distillation via the Wasserstein metric (WMDD) for the Hugging Face ecosystem",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[*find_packages(include=["wmdd_hf", "wmdd_hf.*"]), "wmdd_hf.model_cards"],
    # The dataset-card templates live in model_cards/ at the top of the repository and ship inside the wheel
    # as wmdd_hf/model_cards/*.md (read with importlib.resources).
    package_dir={"wmdd_hf": "wmdd_hf", "wmdd_hf.model_cards": "model_cards"},
    package_data={"wmdd_hf.model_cards": ["*.md"], "wmdd_hf": ["recipes/*.yaml"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.4,<=2.14.1",
        "torchvision>=0.19,<=0.29.1",
        "timm>=1.0.9,<2",
        "transformers>=4.46,<6",
        "datasets>=3.0,<6",
        "accelerate>=1.0,<2",
        "POT>=0.9.4,<0.10",
        "huggingface_hub>=0.26,<2",
        "safetensors>=0.4",
        "tqdm>=4.66",
        "numpy>=1.24",
        "pillow>=10",
        "pyyaml>=6",
        "matplotlib>=3.7",
        "jinja2>=3.1",
    ],
    extras_require={
        "latent": ["diffusers>=0.30,<1"],
        "dev": ["pytest>=8", "ruff>=0.6", "tensorboard>=2.15", "diffusers>=0.30,<1"],
    },
)
