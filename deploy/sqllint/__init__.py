"""sqllint"""
