"""The "Explore the Data" report: `betaspec explore` turns the study's result files into a static,
offline page of eleven widgets — figure, three-line annotation, theorems, claim checks."""
