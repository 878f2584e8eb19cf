"""Protocol maths on scores (pure NumPy): pair verification (k-fold accuracy, ROC, TAR@FAR, EER).

It sits below training, so validation during ``fit`` and ``facerec eval`` share it.
"""
