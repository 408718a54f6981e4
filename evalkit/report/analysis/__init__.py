"""report/analysis"""
