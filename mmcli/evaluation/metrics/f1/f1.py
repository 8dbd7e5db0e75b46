"""F1 score, macro-averaged over classes by default (bundled with mmcli, loaded by path)."""

from sklearn.metrics import f1_score

from mmcli.evaluation.metric_base import LabelMetric


class F1(LabelMetric):
    """F1 score (harmonic mean of precision and recall); macro average by default."""

    NAME = "f1"
    INPUTS = LabelMetric.INPUTS.replace("Returns:", """    average: sklearn's `average` ("macro", "micro", "weighted", "binary"); default "macro".
    labels: optional list of labels to include.
Returns:""").replace("[0, 1].", "[0, 1]; classes with no predicted or true samples count as 0.")

    def score(self, references, predictions, average="macro", labels=None):
        return f1_score(references, predictions, average=average, labels=labels, zero_division=0)
