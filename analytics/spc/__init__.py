"""Statistical process control over historian data: charts, frozen limits, capability, rendering.

`charts` is pure numpy (subgrouping, limits, the twin's rule kernels on the plotted statistic);
`capability` gives Cp/Cpk/Pp/Ppk; `source` loads samples and part counts; `limits` keeps spec
limits and frozen control limits; `build` runs one chart request end to end; `render` draws it.
"""
