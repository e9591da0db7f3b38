"""Process 3: community and member KPIs (jobs), their storage as derived time series, and plots."""
