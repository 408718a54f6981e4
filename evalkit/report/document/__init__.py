"""report/document"""
