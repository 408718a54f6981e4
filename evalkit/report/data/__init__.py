"""report/data"""
