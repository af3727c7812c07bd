"""Text classifiers: tokenizers, text datasets, the WordNet synonym table and the word and
character attacks that keep a text's meaning."""
