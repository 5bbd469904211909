"""Davidson et al. (ICWSM 2017)'s classifier, re-implemented as the same-run baseline of
``pulse eval moderation``.

The anchor figures (weighted F1 0.90, hate recall 0.61 at precision 0.44) come from the paper's
model retrained on all 24,783 tweets and scored on them; the authors' replication notebook, with a
10 % held-out split, reports hate precision 0.44 / recall 0.59. Neither was measured on the rows
Pulse holds out, nor with the 17,276 rows of ``labeled_dev.csv``. This module trains the same
method on the same rows Pulse's model learnt from and scores it on the same held-out rows, so the
comparison is like for like.

Method, as in the authors' notebook (``src/Automated Hate Speech Detection ... .ipynb``):

- text: whitespace collapsed, URLs and mentions removed; tokens are runs of letters, lower case,
  Porter-stemmed (nltk's ``PorterStemmer``, which needs no downloaded data);
- TF-IDF of word 1-3 grams (English stop words plus ``#ff``, ``ff``, ``rt``; ``smooth_idf=False``,
  no norm, ``min_df=5``, ``max_df=0.75``, at most 10,000 features), fitted on the training rows;
- 17 further features: modified Flesch-Kincaid grade and reading ease (one sentence), syllables
  (pyphen hyphenation points, as textstat counted them in 2017), average syllables per word,
  character, term, word and unique-word counts, VADER sentiment (neg, pos, neu, compound;
  ``vaderSentiment``), counts of hashtags, mentions and URLs, and a retweet flag;
- model: feature selection by an L1 logistic regression (C 0.01, ``class_weight='balanced'``,
  one-vs-rest, liblinear), then an L2 logistic regression (``class_weight='balanced'``,
  one-vs-rest, liblinear, C 1); label = the class with the highest score.

Differences, forced by what installs offline here: no part-of-speech tag n-grams (nltk's tagger
model is a separate download), and scikit-learn's English stop-word list instead of nltk's.
"""

from __future__ import annotations

import re

import numpy as np

_SPACE = re.compile(r"\s+")
_URL = re.compile(r"http[s]?://(?:[a-zA-Z]|[0-9]|[$-_@.&+]|[!*\(\),]|(?:%[0-9a-fA-F][0-9a-fA-F]))+")
_MENTION = re.compile(r"@[\w\-]+")
_HASHTAG = re.compile(r"#[\w\-]+")
_LETTERS = re.compile(r"[^a-zA-Z]+")
_WORD = re.compile(r"[a-zA-Z]+")


def _preprocess(text: str) -> str:
    return _MENTION.sub("", _URL.sub("", _SPACE.sub(" ", text)))


class DavidsonBaseline:
    """``fit(texts, y)`` then ``predict(texts) -> (n,)`` labels (0 hate, 1 offensive/harassment,
    2 none) and ``predict_proba(texts) -> (n, 3)``.

    Raises
    ------
    ImportError : nltk, vaderSentiment or pyphen is not installed (they are Pulse dependencies).
    """

    def __init__(self) -> None:
        import pyphen
        from nltk.stem.porter import PorterStemmer
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._stemmer = PorterStemmer()
        self._vader = SentimentIntensityAnalyzer()
        self._hyphen = pyphen.Pyphen(lang="en_US")
        self._vectorizer = None
        self._model = None

    def _tokens(self, text: str) -> list[str]:
        return [self._stemmer.stem(t) for t in _LETTERS.split(text.lower()) if t]

    def _syllables(self, text: str) -> int:
        return sum(len(self._hyphen.positions(w)) + 1 for w in _WORD.findall(text))

    def other_features(self, text: str) -> list[float]:
        """The 17 non-n-gram features of one text, in the notebook's order."""
        s = self._vader.polarity_scores(text)
        words = _preprocess(text)
        syllables = self._syllables(words)
        n_words = len(words.split())
        avg_syl = (syllables + 0.001) / (n_words + 0.001)
        marked = _HASHTAG.sub("HASHTAGHERE", _MENTION.sub("MENTIONHERE", _URL.sub(
            "URLHERE", _SPACE.sub(" ", text))))
        return [0.39 * n_words + 11.8 * avg_syl - 15.59, 206.835 - 1.015 * n_words - 84.6 * avg_syl,
                syllables, avg_syl, sum(len(w) for w in words), len(text), len(text.split()),
                n_words, len(set(words.split())), s["neg"], s["pos"], s["neu"], s["compound"],
                marked.count("HASHTAGHERE"), marked.count("MENTIONHERE"), marked.count("URLHERE"),
                float("rt" in words)]

    def _features(self, texts: list[str]) -> np.ndarray:
        tfidf = self._vectorizer.transform(texts).toarray()
        return np.hstack([tfidf, np.array([self.other_features(t) for t in texts], np.float64)])

    def fit(self, texts: list[str], y: np.ndarray) -> "DavidsonBaseline":
        import warnings

        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
        from sklearn.feature_selection import SelectFromModel
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import Pipeline

        self._vectorizer = TfidfVectorizer(
            tokenizer=self._tokens, preprocessor=_preprocess, token_pattern=None, ngram_range=(1, 3),
            stop_words=sorted(ENGLISH_STOP_WORDS | {"#ff", "ff", "rt"}), use_idf=True,
            smooth_idf=False, norm=None, max_features=10000, min_df=5, max_df=0.75)
        with warnings.catch_warnings():  # stop words are compared before stemming, as in 2017
            warnings.simplefilter("ignore", UserWarning)
            self._vectorizer.fit(texts)
        X = self._features(texts)
        # l1_ratio 1 is the L1 penalty, the default (0) is L2
        select = OneVsRestClassifier(LogisticRegression(class_weight="balanced", l1_ratio=1.0,
                                                        C=0.01, solver="liblinear"))
        model = OneVsRestClassifier(LogisticRegression(class_weight="balanced", solver="liblinear"))
        self._model = Pipeline([
            ("select", SelectFromModel(select, threshold=1e-5, importance_getter=lambda e: np.vstack(
                [c.coef_ for c in e.estimators_]))),
            ("model", model)]).fit(X, np.asarray(y))
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self._model.predict_proba(self._features(texts))

    def predict(self, texts: list[str]) -> np.ndarray:
        return self._model.predict(self._features(texts))
