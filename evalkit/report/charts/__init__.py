"""report/charts"""
