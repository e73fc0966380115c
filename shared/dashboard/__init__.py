"""The dashboard: Streamlit pages over the warehouse's analysts' views (shared/warehouse/views.sql).

Local and App Service tooling only: the Function App never imports it (.funcignore leaves it out).
`totes dashboard` serves it; `queries` holds every figure's SQL, `app` the pages.
"""
